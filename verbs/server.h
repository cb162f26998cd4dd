// VerbsServer: serves zcio calls over RDMA RC connections (rdma_cm).
//
// For a READ with write chunks, the session's reply payload (the brick's
// pool buffers, registered once with this server's PD) is RDMA-WRITTEN into
// the client's segments, then the reply is SENT; RC ordering makes the data
// visible first. For a WRITE with read chunks the payload is RDMA-READ into
// pool buffers before the session sees the call. Calls of one connection are
// answered in order. A connection whose peer breaks the protocol, or whose
// QP fails (a bad rkey: remote access error), is closed with a logged reason;
// the others carry on.
//
// One thread polls the listener and every connection; large reads are handed
// to a second, the CallWorker (verbs/call_worker.h), so that the brick's file
// read overlaps the RDMA work of the replies before it.
//
// Connection caps and the allow-list (base/admission.h) are checked at
// CONNECT_REQUEST: a refused client gets rdma_reject with the reason as
// text in the reject's private data (NUL-terminated, at most
// kRejectReasonMax bytes), which zcio clients report as "connection refused
// by server: <reason>". A connection (it holds a QP and its buffers) with no
// call under way for limits.idle_timeout is disconnected.
//
// Resources: the PD and registrar are the listener's device context
// (verbs/device_context.h), shared with every client of this process on the
// same device; the service's pool is registered on it once. Each connection
// has its own QP, CQ, receive and send buffers.
//
// A shared receive queue (not built; an estimate from the code, not a
// measurement): each connection keeps `credits` receives posted, each a
// max_message buffer, in one MR of its own: 64 x 16 KiB = 1 MiB pinned per
// connection with the defaults, plus 64 receive WQEs, while a client can use
// at most its credits at once and most sit idle. An SRQ sized for the calls
// the server actually processes at a time (the worker runs one, kMaxUnsent
// queue per connection; say 256 receives) would pin 256 x 16 KiB = 4 MiB for
// every connection together: with 100 connections 100 MiB becomes 4 MiB, and
// connection setup stops registering 1 MiB (~70 us on rxe). The price: the
// credit a client holds is no longer a receive reserved for it, so a burst
// from many clients could find the SRQ empty (RNR NAK; rnr_retry 7 retries
// for ever, so it stalls rather than fails) unless credits are granted
// dynamically from the SRQ's level, and the receive completion must name its
// connection (ibv_wc::qp_num) instead of the CQ doing so.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "base/admission.h"
#include "iobuf/buffer_pool.h"
#include "rpc/service.h"
#include "verbs/cm.h"
#include "verbs/device_context.h"
#include "verbs/owners.h"
#include "verbs/params.h"

namespace zcio::verbs {

struct VerbsServerOptions {
  std::string host;  // an address with an RDMA device behind it
  uint16_t port = 0;
  ConnectionParams params;
  uint32_t reply_slots = 16;                 // replies in flight per connection
  uint8_t ack_timeout = kDefaultAckTimeout;  // each QP's (verbs/cm.h); 0 keeps rdma_cm's
  // The pool the service's reply payloads come from; registered here.
  std::shared_ptr<iobuf::BufferPool> pool;
  ConnectionLimits limits;
};

// IB CM's REJ carries 148 bytes of private data; the reason and its NUL fit.
inline constexpr size_t kRejectReasonMax = 140;

struct VerbsServerCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> rdma_writes{0};
  std::atomic<uint64_t> rdma_reads{0};
};

class VerbsServerImpl;

class VerbsServer {
 public:
  static Result<std::unique_ptr<VerbsServer>> start(VerbsServerOptions options,
                                                    rpc::Service& service);
  ~VerbsServer();
  uint16_t port() const;
  const VerbsServerCounters& counters() const;
  void stop();

 private:
  explicit VerbsServer(std::unique_ptr<VerbsServerImpl> impl);
  std::unique_ptr<VerbsServerImpl> impl_;
};

}  // namespace zcio::verbs
