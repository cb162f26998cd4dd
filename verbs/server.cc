#include "verbs/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <optional>
#include <vector>

#include "base/log.h"
#include "verbs/call_worker.h"
#include "verbs/cm.h"
#include "verbs/listener.h"
#include "verbs/message.h"
#include "verbs/rc_connection.h"
#include "verbs/transfer_plan.h"

namespace zcio::verbs {
namespace {

constexpr size_t kMaxSge = 16;
// An RDMA READ's response is one burst from the peer; 1 MiB bursts (1024
// packets at MTU 1024) overflowed a veth's 1000-packet backlog in the
// two-host test and stalled on retransmit timers. Smaller READs pace it.
constexpr uint64_t kMaxReadBytes = 128 * 1024;
// Reads at least this large run on the CallWorker, overlapping the file read
// with the RDMA work of earlier replies; smaller calls are handled on the
// polling thread (two thread wake-ups would cost more than they overlap).
constexpr uint64_t kOffloadBytes = 256 * 1024;
// Calls handed to the session but not yet answered, per connection: enough
// for the worker to read the next reply while this thread sends the last,
// few enough that waiting replies add little to the pool's use (the send
// slots' replies in flight come on top).
constexpr uint32_t kMaxUnsent = 4;

// ERROR state before disconnecting, checked: a QP left running would keep
// serving the client's RDMA after we gave up on it.
void stopQueuePair(RcConnection& conn, const std::string& peer) {
  if (auto stopped = conn.moveToError(); !stopped) {
    ZCIO_LOG(kWarn, "rdma connection from ", peer, ": ", stopped.error().toString(),
             "; destroying its QP");
    conn.destroyQueuePair();
  }
}

// The wr_id of the reply data's RDMA WRITEs (unsignalled: only an error
// completes one, and that closes the connection whatever it was).
const WorkContext kWriteWork{WorkKind::kWrite};

struct PendingCall {
  rpc::IncomingCall call;
  std::vector<RemoteSegment> write_chunks;
  std::vector<RemoteSegment> read_chunks;  // WRITE data still to RDMA-READ
  bool reads_posted = false;
  uint32_t reads_outstanding = 0;
  // The wr_id of its RDMA READs: their completions come straight back here
  // (owner: this call, set where it sits in the connection's queue).
  verbs::WorkContext read_work{WorkKind::kRead};
  bool failed = false;
  // Handed to the session (through the worker, or answered with an error at
  // once); `reply` holds the answer until a send slot takes it.
  bool handed = false;
  bool is_read = false;
  uint64_t length = 0;
  std::optional<rpc::OutgoingReply> reply;
  // The client's memory window (first chunk) to invalidate with the reply,
  // when it asked and both sides announced remote invalidation.
  std::optional<uint32_t> invalidate_rkey;
};

struct ServerConnection {
  AdmissionTicket ticket;  // first member: the last to go (its place under the caps)
  CmId id;
  std::unique_ptr<RcConnection> conn;
  std::unique_ptr<rpc::ServerSession> session;
  std::string peer;
  ConnectionParams params;
  std::deque<PendingCall> queue;
  std::vector<iobuf::IoBufVector> in_flight;  // per send slot: payload kept until sent
  std::vector<uint32_t> slot_work;            // per send slot: work requests it used
  uint32_t sq_free = 0;                       // send-queue entries not in use
  uint32_t unsent = 0;                        // handed calls not yet answered (bounds pool use)
  uint32_t at_worker = 0;                     // calls the worker has not returned yet
  uint64_t read_serial = 0;
  bool established = false;
  bool closing = false;
  std::chrono::steady_clock::time_point last_activity;  // accepted, or last completion
};

std::string peerOf(rdma_cm_id* id) {
  return addressText(rdma_get_peer_addr(id));
}

}  // namespace

class VerbsServerImpl {
 public:
  VerbsServerImpl(VerbsServerOptions options, rpc::Service& service)
      : options_(std::move(options)), service_(service) {}
  ~VerbsServerImpl() { stop(); }

  Result<void> listen();
  void stop();
  uint16_t port() const { return port_; }
  VerbsServerCounters counters_;

 private:
  void run();
  void onCmEvent(rdma_cm_event* event);
  void accept(rdma_cm_event* event);
  void drop(ServerConnection& c, const std::string& reason, bool protocol_error = true);
  void closeIdle();
  void destroy(rdma_cm_id* id);
  void pollConnection(ServerConnection& c);
  void onCompletion(ServerConnection& c, const ibv_wc& wc);
  void onCall(ServerConnection& c, uint32_t slot, uint32_t length);
  void process(ServerConnection& c);
  Result<void> postReads(ServerConnection& c, PendingCall& p);
  void hand(ServerConnection& c, PendingCall& p);
  void collectReplies();
  Result<bool> answer(ServerConnection& c, PendingCall& pending);
  Result<void> sendReply(ServerConnection& c, uint64_t xid, rpc::OutgoingReply reply,
                         const std::vector<RemoteSegment>& chunks);

  VerbsServerOptions options_;
  rpc::Service& service_;
  Admission admission_{options_.limits};  // before connections_: their tickets point here
  EventChannel events_;
  CmId listener_;
  std::shared_ptr<DeviceContext> device_;  // the listener's device: PD, registrar
  bool pool_registered_ = false;           // we hold options_.pool on device_
  std::map<rdma_cm_id*, std::unique_ptr<ServerConnection>> connections_;
  uint16_t port_ = 0;
  int wake_fd_ = -1;
  std::atomic<bool> quit_{false};
  std::unique_ptr<CallWorker> worker_;  // runs sessions' calls; wakes us through wake_fd_
  std::thread thread_;
};

Result<void> VerbsServerImpl::listen() {
  ZCIO_RETURN_IF_ERROR(rdmaDevicePresent());
  if (!options_.pool) options_.pool = iobuf::BufferPool::create();
  auto ep = listenOn(options_.host, options_.port, 64);
  if (!ep) return ep.error();
  events_ = std::move(ep->events);
  listener_ = std::move(ep->id);
  // The same device context as this process's clients on the device (and
  // any other server here): one PD, one registrar.
  auto device = DeviceContext::forDevice(listener_->verbs);
  if (!device) return device.error();
  device_ = std::move(*device);
  // Registered once per device however many servers here use the pool.
  ZCIO_RETURN_IF_ERROR(device_->holdServerPool(options_.pool));
  pool_registered_ = true;
  port_ = listeningPort(listener_.get());
  int flags = fcntl(events_->fd, F_GETFL);
  fcntl(events_->fd, F_SETFL, flags | O_NONBLOCK);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return makeError(errno, "eventfd");
  worker_ = std::make_unique<CallWorker>(wake_fd_);
  thread_ = std::thread([this] { run(); });
  return okResult();
}

void VerbsServerImpl::stop() {
  if (thread_.joinable()) {
    quit_ = true;
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd_, &one, sizeof one);
    (void)ignored;
    thread_.join();
  }
  worker_.reset();  // no call runs on a session after this
  for (auto& [id, c] : connections_) {
    stopQueuePair(*c->conn, c->peer);
    rdma_disconnect(id);
  }
  connections_.clear();
  if (pool_registered_) device_->releaseServerPool(options_.pool.get());
  pool_registered_ = false;
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
}

void VerbsServerImpl::run() {
  std::vector<pollfd> fds;
  std::vector<ServerConnection*> owners;
  while (!quit_) {
    fds.assign({{wake_fd_, POLLIN, 0}, {events_->fd, POLLIN, 0}});
    owners.assign(2, nullptr);
    for (auto& [id, c] : connections_) {
      if (c->conn && c->established && !c->closing) {
        fds.push_back({c->conn->completionFd(), POLLIN, 0});
        owners.push_back(c.get());
      }
    }
    int n = ::poll(fds.data(), fds.size(), 100);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents != 0) {
      uint64_t count = 0;
      ssize_t ignored = ::read(wake_fd_, &count, sizeof count);
      (void)ignored;
      collectReplies();
    }
    for (size_t i = 2; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      ServerConnection& c = *owners[i];
      if (auto r = c.conn->consumeEvent(); !r) {
        drop(c, r.error().toString());
        continue;
      }
      pollConnection(c);
    }
    if (fds[1].revents != 0) {
      rdma_cm_event* event = nullptr;
      while (rdma_get_cm_event(events_.get(), &event) == 0) onCmEvent(event);
    }
    closeIdle();
  }
}

// Runs at least every 100 ms (the poll timeout above). A connection is idle
// when nothing is queued, at the worker or being sent, and no completion
// came for idle_timeout; one that never got ESTABLISHED counts from its
// CONNECT_REQUEST.
void VerbsServerImpl::closeIdle() {
  auto limit = options_.limits.idle_timeout;
  if (limit.count() <= 0) return;
  auto now = std::chrono::steady_clock::now();
  std::vector<rdma_cm_id*> unestablished;
  for (auto& [id, c] : connections_) {
    if (c->closing || now - c->last_activity < limit) continue;
    if (!c->queue.empty() || c->at_worker > 0 || c->unsent > 0) continue;
    bool sending = std::any_of(c->in_flight.begin(), c->in_flight.end(),
                               [](const iobuf::IoBufVector& v) { return !v.empty(); });
    if (sending) continue;
    std::string reason = "idle for " + std::to_string(limit.count()) + " ms with no call";
    if (c->established) {
      drop(*c, reason, false);
    } else {
      ZCIO_LOG(kWarn, "rdma connection from ", c->peer, " closed: ", reason,
               " (never established)");
      unestablished.push_back(id);
    }
  }
  for (rdma_cm_id* id : unestablished) destroy(id);
}

void VerbsServerImpl::onCmEvent(rdma_cm_event* event) {
  rdma_cm_id* id = event->id;
  switch (event->event) {
    case RDMA_CM_EVENT_CONNECT_REQUEST:
      accept(event);  // acks
      return;
    case RDMA_CM_EVENT_ESTABLISHED: {
      auto it = connections_.find(id);
      if (it != connections_.end()) {
        it->second->established = true;
        counters_.connections.fetch_add(1, std::memory_order_relaxed);
        ZCIO_LOG(kInfo, "rdma connection from ", it->second->peer, " established (",
                 it->second->conn->describeRetries(), ")");
        pollConnection(*it->second);
      }
      rdma_ack_cm_event(event);
      return;
    }
    case RDMA_CM_EVENT_DISCONNECTED:
    case RDMA_CM_EVENT_CONNECT_ERROR:
    case RDMA_CM_EVENT_UNREACHABLE:
    case RDMA_CM_EVENT_REJECTED:
    case RDMA_CM_EVENT_TIMEWAIT_EXIT: {
      std::string what = describeEvent(event);
      rdma_ack_cm_event(event);
      auto it = connections_.find(id);
      if (it != connections_.end()) {
        if (!it->second->closing)
          ZCIO_LOG(kInfo, "rdma connection from ", it->second->peer, " closed: ", what);
        destroy(id);
      }
      return;
    }
    default:
      ZCIO_LOG(kDebug, "rdma_cm event ", describeEvent(event));
      rdma_ack_cm_event(event);
      return;
  }
}

void VerbsServerImpl::accept(rdma_cm_event* event) {
  rdma_cm_id* id = event->id;
  auto theirs = decodeParams(event->param.conn.private_data, event->param.conn.private_data_len);
  // The reason travels to the client in the reject's private data.
  auto reject = [&](const std::string& why) {
    ZCIO_LOG(kWarn, "rdma connection from ", peerOf(id), " refused: ", why);
    counters_.refused.fetch_add(1, std::memory_order_relaxed);
    std::string text = why.substr(0, kRejectReasonMax - 1);
    rdma_reject(id, text.c_str(), static_cast<uint8_t>(text.size() + 1));
    rdma_ack_cm_event(event);
    rdma_destroy_id(id);
  };
  auto ticket = admission_.admit(IpAddress::fromSockaddr(rdma_get_peer_addr(id)));
  if (!ticket) return reject(ticket.error().what);
  if (!theirs) return reject(theirs.error().what);
  if (id->verbs != device_->verbs())
    return reject("arrived on a different RDMA device than the listener's");
  auto c = std::make_unique<ServerConnection>();
  c->ticket = std::move(*ticket);
  c->last_activity = std::chrono::steady_clock::now();
  c->peer = peerOf(id);
  c->params = negotiate(options_.params, *theirs);
  // Each reply may need one RDMA WRITE per 16 pool pieces or segment.
  uint32_t work = static_cast<uint32_t>(
      rpc::kMaxPayloadLength / options_.pool->chunkSize() / kMaxSge + c->params.max_segments + 2);
  auto conn = RcConnection::create(id, device_->pd(), c->params, options_.reply_slots, work);
  if (!conn) return reject(conn.error().toString());
  c->conn = std::move(*conn);
  c->in_flight.resize(options_.reply_slots);
  c->slot_work.resize(options_.reply_slots);
  c->sq_free = c->conn->sendQueueDepth();
  c->session = service_.openSession("rdma " + c->peer);
  uint8_t private_data[kParamsWireSize];
  rdma_conn_param param = makeConnParam(c->params, private_data);
  if (options_.ack_timeout != 0) {
    if (auto set = setAckTimeout(id, options_.ack_timeout); !set) {
      c->conn.reset();
      return reject(set.error().toString());
    }
  }
  if (rdma_accept(id, &param) != 0) {
    int err = errno;
    c->conn.reset();
    return reject(std::string("rdma_accept: ") + strerror(err));
  }
  rdma_ack_cm_event(event);
  c->id.reset(id);
  connections_.emplace(id, std::move(c));
}

void VerbsServerImpl::drop(ServerConnection& c, const std::string& reason, bool protocol_error) {
  if (c.closing) return;
  c.closing = true;
  if (protocol_error) counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  ZCIO_LOG(kWarn, "rdma connection from ", c.peer, " closed: ", reason);
  stopQueuePair(*c.conn, c.peer);
  rdma_disconnect(c.id.get());  // DISCONNECTED then frees it
}

void VerbsServerImpl::destroy(rdma_cm_id* id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  ServerConnection& c = *it->second;
  worker_->forget(&c);  // before the session and the queue its calls point into go
  c.session.reset();
  c.queue.clear();
  c.conn.reset();  // QP before the id
  connections_.erase(it);
}

void VerbsServerImpl::pollConnection(ServerConnection& c) {
  ibv_wc wcs[32];
  while (!c.closing) {
    int got = c.conn->poll(wcs);
    if (got <= 0) break;
    c.last_activity = std::chrono::steady_clock::now();
    for (int i = 0; i < got && !c.closing; ++i) onCompletion(c, wcs[i]);
  }
  if (!c.closing) process(c);
}

void VerbsServerImpl::onCompletion(ServerConnection& c, const ibv_wc& wc) {
  if (wc.status != IBV_WC_SUCCESS) {
    drop(c,
         std::string("work completion error: ") + ibv_wc_status_str(wc.status) +
             (wc.status == IBV_WC_REM_ACCESS_ERR ? " (the client's rkey or segment is bad)" : ""));
    return;
  }
  const WorkContext& work = workOf(wc);
  switch (work.kind) {
    case WorkKind::kReceive:
      onCall(c, work.index, wc.byte_len);
      return;
    case WorkKind::kSend: {
      uint32_t slot = work.index;
      c.in_flight[slot].clear();  // the WRITEs before this SEND are done too
      c.sq_free += c.slot_work[slot];
      c.conn->returnSendSlot(slot);
      return;
    }
    case WorkKind::kRead: {
      ++c.sq_free;
      // The call stays in the queue (a deque: it does not move) until its
      // reads are in, and nothing is polled once the connection closes.
      auto* p = static_cast<PendingCall*>(work.owner);
      if (p->reads_outstanding > 0) --p->reads_outstanding;
      return;
    }
    default:
      return;
  }
}

void VerbsServerImpl::onCall(ServerConnection& c, uint32_t slot, uint32_t length) {
  auto message = decodeMessage({c.conn->receiveBuffer(slot), length});
  if (!message) return drop(c, "protocol error: " + message.error().what);
  if (message->preamble.type != rpc::FrameType::kCall)
    return drop(c, "protocol error: client sent a reply");
  PendingCall p;
  p.call.xid = message->preamble.xid;
  if (!p.call.header.ParseFromArray(message->header.data(),
                                    static_cast<int>(message->header.size()))) {
    return drop(c, "protocol error: call header does not parse");
  }
  if (!message->payload.empty()) {
    // Inline WRITE data: into pool buffers (the server's copy).
    auto buffers = options_.pool->getVector(message->payload.size());
    if (!buffers) return drop(c, buffers.error().toString());
    iovec src{const_cast<std::byte*>(message->payload.data()), message->payload.size()};
    iobuf::IoBufVector::wrapUser({&src, 1}).copyTo(buffers->toIovecs());
    p.call.payload = std::move(*buffers);
  }
  if (auto r = c.conn->postReceive(slot); !r) return drop(c, r.error().toString());
  counters_.calls.fetch_add(1, std::memory_order_relaxed);
  auto& h = p.call.header;
  if (static_cast<uint32_t>(h.write_chunks_size() + h.read_chunks_size()) > c.params.max_segments) {
    p.failed = true;  // answered with an error below
  }
  for (const auto& s : h.write_chunks()) p.write_chunks.push_back({s.addr(), s.rkey(), s.length()});
  if (h.remote_invalidate() &&
      (c.params.features & ConnectionParams::kFeatureRemoteInvalidate) != 0) {
    if (h.op() == rpc::pb::OP_READ && h.write_chunks_size() > 0) {
      p.invalidate_rkey = h.write_chunks(0).rkey();
    } else if (h.op() == rpc::pb::OP_WRITE && h.read_chunks_size() > 0) {
      p.invalidate_rkey = h.read_chunks(0).rkey();
    }
  }
  if (!p.failed && h.read_chunks_size() > 0) {
    uint64_t total = 0;
    for (const auto& s : h.read_chunks()) {
      total += s.length();
      p.read_chunks.push_back({s.addr(), s.rkey(), s.length()});
    }
    if (h.op() != rpc::pb::OP_WRITE || total != h.length() || !p.call.payload.empty() ||
        total > rpc::kMaxPayloadLength) {
      p.failed = true;
      p.read_chunks.clear();
    }
  }
  h.clear_write_chunks();
  h.clear_read_chunks();
  c.queue.push_back(std::move(p));
}

// Work requests a transfer of `bytes` through `segments` remote segments
// may need, at most: one per (segment, pool chunk, max-size piece) boundary.
uint64_t workBound(uint64_t bytes, size_t segments, uint64_t chunk, uint64_t piece) {
  return segments + bytes / chunk + bytes / piece + 1;
}

Result<void> VerbsServerImpl::postReads(ServerConnection& c, PendingCall& p) {
  uint64_t total = p.call.header.length();
  auto buffers = options_.pool->getVector(total);
  if (!buffers) return buffers.error();
  p.call.payload = std::move(*buffers);
  p.read_work.owner = &p;  // p is in c.queue, where it stays until answered
  auto made = planTransfer(
      p.call.payload, p.read_chunks, kMaxSge,
      [&](std::span<const ibv_sge> sges, const RemoteSegment& remote) {
        return c.conn->postRead(sges, remote, wrIdOf(p.read_work));
      },
      kMaxReadBytes);
  if (!made) return made.error();
  c.sq_free -= static_cast<uint32_t>(*made);
  p.reads_outstanding = static_cast<uint32_t>(*made);
  p.reads_posted = true;
  counters_.rdma_reads.fetch_add(*made, std::memory_order_relaxed);
  return okResult();
}

void VerbsServerImpl::process(ServerConnection& c) {
  // Pull WRITE data for queued calls, in order, while the send queue has
  // room for every request it could take (never overrun the QP).
  for (auto& p : c.queue) {
    if (p.read_chunks.empty() || p.reads_posted) continue;
    uint64_t need = workBound(p.call.header.length(), p.read_chunks.size(),
                              options_.pool->chunkSize(), kMaxReadBytes);
    if (need > c.sq_free) break;
    if (auto r = postReads(c, p); !r) return drop(c, r.error().toString());
  }
  // Hand calls to the session in order once their data is in (at most
  // kMaxUnsent unanswered), send the answered ones in order, and again while
  // either makes room for the other.
  for (bool progress = true; progress;) {
    progress = false;
    for (auto& p : c.queue) {
      if (p.handed) continue;
      if (p.reads_outstanding > 0 || (!p.read_chunks.empty() && !p.reads_posted)) break;
      if (c.unsent >= kMaxUnsent) break;
      hand(c, p);
      if (c.closing) return;
      progress = true;
    }
    while (!c.queue.empty() && c.queue.front().reply) {
      auto answered = answer(c, c.queue.front());
      if (!answered) return drop(c, answered.error().toString());
      if (!*answered) return;  // no send slot: resumes on a send completion
      c.queue.pop_front();
      --c.unsent;
      progress = true;
    }
  }
}

void VerbsServerImpl::hand(ServerConnection& c, PendingCall& p) {
  auto& h = p.call.header;
  p.handed = true;
  p.is_read = h.op() == rpc::pb::OP_READ;
  p.length = h.length();
  ++c.unsent;
  uint64_t chunk_total = 0;
  for (const auto& s : p.write_chunks) chunk_total += s.length;
  if (p.failed) {
    p.reply = rpc::errorReply(
        EINVAL, "bad chunk lists (too many segments, or lengths that disagree with the call)");
  } else if (p.is_read && !p.write_chunks.empty() && chunk_total < h.length()) {
    p.reply =
        rpc::errorReply(EINVAL, "write chunks hold " + std::to_string(chunk_total) +
                                    " bytes, the read asks for " + std::to_string(h.length()));
  } else if (p.is_read && p.write_chunks.empty() && h.length() > c.params.inline_threshold) {
    p.reply = rpc::errorReply(EINVAL, "a read over the inline threshold needs write chunks");
  } else if (c.at_worker > 0 || (p.is_read && p.length >= kOffloadBytes)) {
    // Behind calls at the worker, a call goes there too: the session sees a
    // connection's calls in order, one at a time. p.call.xid stays readable
    // (moving an IncomingCall copies it).
    ++c.at_worker;
    worker_->submit(&c, &p, c.session.get(), std::move(p.call));
  } else {
    auto handled = c.session->handle(std::move(p.call));
    if (!handled) return drop(c, handled.error().toString());
    p.reply = std::move(*handled);
  }
}

// The worker's finished calls: a reply waits in its PendingCall (destroy()
// forgets a connection's results first, so every owner here is alive).
void VerbsServerImpl::collectReplies() {
  std::vector<ServerConnection*> touched;
  for (auto& done : worker_->takeDone()) {
    auto* c = static_cast<ServerConnection*>(const_cast<void*>(done.owner));
    --c->at_worker;
    if (c->closing) continue;
    if (!done.reply) {
      drop(*c, done.reply.error().toString());
      continue;
    }
    static_cast<PendingCall*>(done.tag)->reply = std::move(*done.reply);
    if (std::find(touched.begin(), touched.end(), c) == touched.end()) touched.push_back(c);
  }
  for (ServerConnection* c : touched) {
    if (!c->closing) process(*c);
  }
}

Result<bool> VerbsServerImpl::answer(ServerConnection& c, PendingCall& p) {
  uint64_t need =
      1 + workBound(p.length, p.write_chunks.size(), options_.pool->chunkSize(), UINT32_MAX);
  if (need > c.sq_free) return false;  // resumes on a send completion
  auto slot = c.conn->takeSendSlot();
  if (!slot) return false;
  const bool is_read = p.is_read;
  rpc::OutgoingReply reply = std::move(*p.reply);
  p.reply.reset();
  uint32_t writes = 0;
  // RDMA WRITE the payload into the client's segments, unsignalled: the
  // signalled SEND behind them tells us when all are done.
  if (!reply.payload.empty() && !p.write_chunks.empty()) {
    auto made = planTransfer(reply.payload, p.write_chunks, kMaxSge,
                             [&](std::span<const ibv_sge> sges, const RemoteSegment& remote) {
                               return c.conn->postWrite(sges, remote, false, wrIdOf(kWriteWork));
                             });
    if (!made) {
      c.conn->returnSendSlot(*slot);
      return made.error();
    }
    writes = static_cast<uint32_t>(*made);
    counters_.rdma_writes.fetch_add(*made, std::memory_order_relaxed);
  }
  std::string header;
  reply.header.SerializeToString(&header);
  std::vector<std::byte> inline_payload;
  if (!reply.payload.empty() && p.write_chunks.empty()) {
    inline_payload.resize(reply.payload.totalLength());
    std::vector<iovec> dst{{inline_payload.data(), inline_payload.size()}};
    reply.payload.copyTo(dst);
  }
  auto length = encodeMessage({c.conn->sendBuffer(*slot), c.params.max_message},
                              rpc::FrameType::kReply, p.call.xid, header, inline_payload);
  if (!length) {
    c.conn->returnSendSlot(*slot);
    return length.error();
  }
  // Invalidate the client's window only if this reply moved data through it:
  // an RDMA op on a window the client already invalidated (its call timed
  // out) then fails first and ends the connection, so a late reply never
  // invalidates a window twice. Otherwise the client invalidates locally.
  std::optional<uint32_t> invalidate;
  bool accessed = is_read ? writes > 0 : (p.reads_posted && !p.failed);
  if (accessed) invalidate = p.invalidate_rkey;
  c.in_flight[*slot] = std::move(reply.payload);
  c.slot_work[*slot] = writes + 1;
  c.sq_free -= writes + 1;
  if (auto r = c.conn->postSend(*slot, *length, {}, {}, invalidate); !r) return r.error();
  return true;
}

VerbsServer::VerbsServer(std::unique_ptr<VerbsServerImpl> impl) : impl_(std::move(impl)) {}
VerbsServer::~VerbsServer() {
  stop();
}
uint16_t VerbsServer::port() const {
  return impl_->port();
}
const VerbsServerCounters& VerbsServer::counters() const {
  return impl_->counters_;
}
void VerbsServer::stop() {
  impl_->stop();
}

Result<std::unique_ptr<VerbsServer>> VerbsServer::start(VerbsServerOptions options,
                                                        rpc::Service& service) {
  auto impl = std::make_unique<VerbsServerImpl>(std::move(options), service);
  ZCIO_RETURN_IF_ERROR(impl->listen());
  return std::unique_ptr<VerbsServer>(new VerbsServer(std::move(impl)));
}

}  // namespace zcio::verbs
