// zcio::fops::Client: the file API an application uses.
//
//   auto client = Client::connect("tcp://127.0.0.1:7700");
//   auto fh = (*client)->open("data/f1", O_RDONLY);
//   (*client)->preadvDirect(*fh, iov, offset);   // lands in iov, 0 copies
//
// Read variants:
//  - preadvDirect: the reply payload is received straight into `iov`; zcio
//    copies none of it. `iov` must stay valid and untouched until the call
//    returns (async: until the callback ran). No alignment is required on
//    TCP (the verbs transport will state its own).
//  - preadv (regular): the payload lands in pool buffers and is copied into
//    `iov` — GlusterFS's behaviour, kept for interop, caching and as the
//    baseline. Counted in stats().bytes_copied.
// Write variants:
//  - pwritevDirect: gathered from `iov` with writev, no copy.
//  - pwritev (regular): copied into pool buffers first (counted), so `iov` is
//    free again as soon as the call is queued.
// "Direct" is a client-side property; the wire protocol is the same.
//
// A short read (EOF) is a result, not an error. One call moves at most
// maxIoSize() bytes (64 MiB); larger requests fail with EINVAL.
//
// Thread-safety: all methods are thread-safe. Sync methods block the calling
// thread; async callbacks run on the connection's thread and must not block
// or call sync methods of the same client.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "iobuf/buffer_pool.h"
#include "rpc/transport.h"
#include "verbs/client_transport.h"

namespace zcio::fops {

using FileHandle = uint64_t;

struct FileStat {
  uint64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t ino = 0;
};

struct ClientOptions {
  std::chrono::milliseconds timeout{60000};  // per call
  uint32_t max_in_flight = 1024;             // request-table slots (TCP)
  verbs::VerbsClientOptions rdma;            // rdma:// and auto://
};

// A snapshot of the client's counters.
struct ClientStats {
  uint64_t requests = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_copied = 0;  // payload bytes zcio copied in user space
  uint64_t late_replies = 0;
  uint64_t bytes_discarded = 0;
  uint64_t timeouts = 0;
  uint64_t cancels = 0;
  uint64_t protocol_errors = 0;
  uint64_t registrations = 0;      // RDMA: user memory registered for one call
  uint64_t registration_hits = 0;  // RDMA: calls served by pre-registered memory
};

enum class IoMode { kRegular, kDirect };

// Lets an async call be cancelled.
class AsyncCall {
 public:
  AsyncCall() = default;
  explicit AsyncCall(rpc::CallPtr call) : call_(std::move(call)) {}
  const rpc::CallPtr& call() const { return call_; }

 private:
  rpc::CallPtr call_;
};

class Client {
 public:
  using IoCallback = std::function<void(Result<size_t>)>;

  // url: tcp://host:port, rdma://host:port, or auto://host:port (RDMA when a
  // device and route exist, else TCP; describe() says which).
  static Result<std::unique_ptr<Client>> connect(const std::string& url,
                                                 ClientOptions options = {});
  // Adopts an existing transport (tests, and the verbs transport later).
  Client(std::unique_ptr<rpc::Transport> transport, ClientOptions options);
  ~Client();

  // flags: O_RDONLY / O_WRONLY / O_RDWR, O_CREAT, O_TRUNC, O_EXCL.
  Result<FileHandle> open(const std::string& path, int flags, mode_t mode = 0644);
  Result<FileStat> stat(const std::string& path);
  Result<FileStat> fstat(FileHandle fh);
  Result<void> fsync(FileHandle fh);
  Result<void> close(FileHandle fh);

  Result<size_t> preadv(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> preadvDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> pwritev(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> pwritevDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset);

  // Async forms: `done` gets the byte count or the error.
  AsyncCall preadvAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                        IoCallback done);
  AsyncCall pwritevAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                         IoCallback done);
  // The callback then runs with ECANCELED unless the call had completed.
  void cancel(const AsyncCall& call);

  // Pre-registers memory the application will read into / write from many
  // times (as MPI_Alloc_mem or ucp_mem_map do): on RDMA, direct calls inside
  // it skip registration (stats().registration_hits); the memory is exposed
  // to the server for as long as it stays registered, and a failed or
  // cancelled call on it closes the connection (the only way to revoke a
  // long-lived rkey early). Deregister before freeing. No-op on TCP.
  Result<void> registerMemory(void* addr, size_t length);
  Result<void> deregisterMemory(void* addr, size_t length);

  ClientStats stats() const;
  std::string describe() const;
  static constexpr uint64_t maxIoSize() { return 64ull * 1024 * 1024; }

 private:
  using HeaderCallback = std::function<void(Result<rpc::ReplyData>)>;
  rpc::CallPtr makeCall(rpc::pb::Op op, HeaderCallback done);
  Result<rpc::ReplyData> roundTrip(rpc::CallPtr call);

  std::unique_ptr<rpc::Transport> transport_;
  ClientOptions options_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> bytes_copied_{0};
};

}  // namespace zcio::fops
