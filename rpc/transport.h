// Transport: what fops/ talks to. TCP implements it now, verbs later; the
// choice is made once per connection (a runtime interface), while posting and
// polling inside a transport stay plain calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "iobuf/buffer_pool.h"
#include "rpc/call.h"

namespace zcio::rpc {

// Counters a transport keeps; read from any thread.
struct TransportCounters {
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> replies{0};
  std::atomic<uint64_t> payload_bytes_sent{0};
  std::atomic<uint64_t> payload_bytes_received{0};  // into destinations or pool
  std::atomic<uint64_t> payload_bytes_copied{0};    // by the transport itself (inline SENDs)
  std::atomic<uint64_t> late_replies{0};            // reply for a finished call
  std::atomic<uint64_t> bytes_discarded{0};         // drained into scratch
  std::atomic<uint64_t> timeouts{0};
  std::atomic<uint64_t> cancels{0};
  std::atomic<uint64_t> protocol_errors{0};
  // RDMA: a segment of user memory that needed a new registration, or one
  // that reused a cached or pre-registered one.
  std::atomic<uint64_t> registrations{0};
  std::atomic<uint64_t> registration_hits{0};
  // RDMA memory windows: bound per segment, then invalidated by the peer
  // (SEND with invalidate) or locally before the call completes.
  std::atomic<uint64_t> window_binds{0};
  std::atomic<uint64_t> window_remote_invalidations{0};
  std::atomic<uint64_t> window_local_invalidations{0};
};

class Transport {
 public:
  virtual ~Transport() = default;

  // Queues `call`; its `done` runs exactly once, on the transport's thread,
  // with the reply or an error (timeout, cancel, connection lost, protocol).
  // Thread-safe.
  virtual void submit(CallPtr call) = 0;
  // Fails `call` with ECANCELED unless it already completed. If its reply is
  // being received or its payload sent at this moment, completion waits until
  // the transport has let go of the caller's memory. Thread-safe.
  virtual void cancel(CallPtr call) = 0;
  // Fails every pending call with ESHUTDOWN and closes. Idempotent; blocks
  // until the transport thread has stopped. Not callable from `done`.
  virtual void shutdown() = 0;

  virtual const TransportCounters& counters() const = 0;
  // Where callers should stage payloads they copy anyway (regular writes):
  // on RDMA its buffers are registered, so they go out without another copy
  // or registration.
  virtual std::shared_ptr<iobuf::BufferPool> payloadPool() const = 0;
  // Pre-registers [addr, addr + length) for as long as the caller keeps it
  // (as MPI_Alloc_mem / ucp_mem_map): direct calls inside it never register
  // on the hot path. The caller deregisters before freeing the memory.
  // Transports that need no registration accept and ignore it. Thread-safe.
  virtual Result<void> registerMemory(void* addr, size_t length) = 0;
  virtual Result<void> deregisterMemory(void* addr, size_t length) = 0;
  virtual std::string describe() const = 0;  // e.g. "tcp 127.0.0.1:40000"
};

}  // namespace zcio::rpc
