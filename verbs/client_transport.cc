#include "verbs/client_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>

#include "base/log.h"
#include "verbs/cm.h"
#include "verbs/connector.h"
#include "verbs/message.h"

namespace zcio::verbs {
namespace {

std::string statusText(const ibv_wc& wc) {
  return std::string(ibv_wc_status_str(wc.status)) + " (vendor error " +
         std::to_string(wc.vendor_err) + ")";
}

// The answer to rdma_connect. A zcio server that refuses (connection caps,
// allow-list) puts its reason as text in the reject's private data; it is
// read here, before the event is acked and the data freed.
Result<rdma_cm_event*> waitForConnect(rdma_event_channel* channel,
                                      std::chrono::milliseconds timeout) {
  pollfd pfd{channel->fd, POLLIN, 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready == 0) return makeError(ETIMEDOUT, "timed out waiting for ESTABLISHED");
  if (ready < 0) return makeError(errno, "poll on the rdma_cm event channel");
  rdma_cm_event* event = nullptr;
  if (rdma_get_cm_event(channel, &event) != 0) return makeError(errno, "rdma_get_cm_event");
  if (event->event == RDMA_CM_EVENT_ESTABLISHED) return event;
  std::string reason;
  if (event->event == RDMA_CM_EVENT_REJECTED && event->param.conn.private_data != nullptr) {
    const auto* bytes = static_cast<const char*>(event->param.conn.private_data);
    for (size_t i = 0; i < event->param.conn.private_data_len && bytes[i] != '\0'; ++i)
      reason.push_back(std::isprint(static_cast<unsigned char>(bytes[i])) ? bytes[i] : '?');
  }
  std::string what = describeEvent(event);
  int code = event->event == RDMA_CM_EVENT_REJECTED      ? ECONNREFUSED
             : event->event == RDMA_CM_EVENT_UNREACHABLE ? EHOSTUNREACH
                                                         : ECONNABORTED;
  rdma_ack_cm_event(event);
  if (!reason.empty()) return makeError(ECONNREFUSED, "connection refused by server: " + reason);
  return makeError(code, "expected ESTABLISHED, got " + what);
}

}  // namespace

VerbsClientTransport::VerbsClientTransport(VerbsClientOptions options)
    : options_(options), table_(options.max_in_flight), states_(table_.capacity()) {}

Result<std::unique_ptr<VerbsClientTransport>> VerbsClientTransport::connect(
    const std::string& host, uint16_t port, VerbsClientOptions options) {
  ZCIO_RETURN_IF_ERROR(rdmaDevicePresent());
  auto transport = std::make_unique<VerbsClientTransport>(options);
  ZCIO_RETURN_IF_ERROR(transport->open(host, port));
  return transport;
}

Result<void> VerbsClientTransport::open(const std::string& host, uint16_t port) {
  auto ep = resolveRoute(host, port, options_.connect_timeout, options_.ack_timeout);
  if (!ep) return ep.error();
  events_ = std::move(ep->events);
  id_ = std::move(ep->id);

  // The route names the device; its PD, caches and pool are shared with
  // every other connection of this process on it.
  auto device = DeviceContext::forDevice(id_->verbs);
  if (!device) return device.error();
  device_ = std::move(*device);
  std::string windows_off;  // why user memory is registered per call, if it is
  ConnectionParams announced = options_.params;
  if (!options_.memory_windows) {
    windows_off = "memory windows disabled by the client's options";
  } else {
    windows_off = device_->windowsUnavailable();
  }
  // Remote invalidation is only asked for where windows can be bound.
  if (!windows_off.empty()) announced.features &= ~ConnectionParams::kFeatureRemoteInvalidate;
  // Pool buffers are library memory registered once, for every connection
  // of the device. User memory is only ever exposed for one call.
  auto pool = device_->clientPool();
  if (!pool) return pool.error();
  pool_ = std::move(*pool);

  // Receives are posted before connecting, sized for what we announce. Each
  // call may also bind and later invalidate a window per segment: room for
  // a few per call on average, and always for one call with every segment.
  uint32_t credits = options_.params.credits;
  uint32_t per_call = 2 * options_.params.max_segments + 1;
  uint32_t work_per_send = std::max<uint32_t>(4, (per_call + credits - 1) / credits);
  auto conn =
      RcConnection::create(id_.get(), device_->pd(), options_.params, credits, work_per_send);
  if (!conn) return conn.error();
  conn_ = std::move(*conn);
  sq_free_ = conn_->sendQueueDepth();
  slot_work_.assign(credits, 0);

  uint8_t private_data[kParamsWireSize];
  rdma_conn_param param = makeConnParam(announced, private_data);
  if (rdma_connect(id_.get(), &param) != 0) return makeError(errno, "rdma_connect");
  auto ev = waitForConnect(events_.get(), options_.connect_timeout);
  if (!ev)
    return makeError(ev.error().code, "connect to rdma://" + host + ":" + std::to_string(port) +
                                          ": " + ev.error().what);
  auto theirs = decodeParams((*ev)->param.conn.private_data, (*ev)->param.conn.private_data_len);
  rdma_ack_cm_event(*ev);
  if (!theirs) return theirs.error();
  params_ = negotiate(announced, *theirs);
  if (windows_off.empty() && (params_.features & ConnectionParams::kFeatureRemoteInvalidate) == 0)
    windows_off = "the server does not announce remote invalidation";
  use_windows_ = windows_off.empty();
  // Windows: user memory stays registered across calls, so the cache must
  // see unmaps (invariant 2). Fallback: only explicit pins are cached.
  cache_ = use_windows_ ? &device_->cached() : &device_->perCall();
  if (use_windows_) {
    windows_ = std::make_unique<MemoryWindowPool>(device_->pd());
    invalidate_flags_ = device_->remoteInvalidateFlags();
  }
  std::string exposure =
      use_windows_
          ? std::string("user memory: type-2 windows over cached registrations") +
                (cache_->caching() ? "" : " (not cached: " + cache_->fallbackReason() + ")")
          : "user memory: per-call registration (" + windows_off + ")";

  description_ = "rdma " + device_->name() + " " +
                 addressText(rdma_get_local_addr(id_.get()), /*with_port=*/false) + " -> " +
                 addressText(rdma_get_peer_addr(id_.get())) + " (credits " +
                 std::to_string(params_.credits) + ", inline " +
                 std::to_string(params_.inline_threshold) + "; " + exposure + "; " +
                 conn_->describeRetries() + ")";

  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return makeError(errno, "eventfd");
  int flags = fcntl(events_->fd, F_GETFL);
  fcntl(events_->fd, F_SETFL, flags | O_NONBLOCK);
  thread_ = std::thread([this] { run(); });
  return okResult();
}

Result<void> VerbsClientTransport::registerMemory(void* addr, size_t length) {
  uint32_t access = use_windows_ ? iobuf::kLocalWrite | iobuf::kMwBind
                                 : iobuf::kLocalWrite | iobuf::kRemoteWrite | iobuf::kRemoteRead;
  auto keys = cache_->pin(addr, length, access);
  if (!keys) return keys.error();
  return okResult();
}

Result<void> VerbsClientTransport::deregisterMemory(void* addr, size_t length) {
  return cache_->unpin(addr, length);
}

VerbsClientTransport::~VerbsClientTransport() {
  shutdown();
  conn_.reset();
  windows_.reset();  // unbinds what is left before the MRs under them go
  // The device's registrations and pool stay for its other connections; the
  // last holder of device_ deregisters them.
  cache_ = nullptr;
  if (wake_fd_ >= 0) close(wake_fd_);
}

void VerbsClientTransport::post(std::function<void()> task) {
  uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof one);
  (void)ignored;
  inbox_.push_back(std::move(task));
}

void VerbsClientTransport::submit(rpc::CallPtr call) {
  {
    std::lock_guard lock(inbox_mutex_);
    if (!stopping_) {
      post([this, call] { start(call); });
      return;
    }
  }
  call->done(makeError(ESHUTDOWN, "transport is shut down"));
}

void VerbsClientTransport::cancel(rpc::CallPtr call) {
  std::lock_guard lock(inbox_mutex_);
  if (stopping_) return;
  post([this, call] {
    rpc::PendingRequest* entry = table_.find(call->xid);
    if (entry == nullptr || entry->call != call || entry->state == rpc::CallState::kReleasing)
      return;
    counters_.cancels.fetch_add(1, std::memory_order_relaxed);
    finish(*entry, makeError(ECANCELED, "call cancelled"));
  });
}

void VerbsClientTransport::shutdown() {
  {
    std::lock_guard lock(inbox_mutex_);
    if (stopping_) return;
    stopping_ = true;
    post([this] {
      failConnection(makeError(ESHUTDOWN, "transport is shut down"));
      quit_ = true;
    });
  }
  if (thread_.joinable()) thread_.join();
}

void VerbsClientTransport::run() {
  ibv_wc wcs[32];
  next_sweep_ = std::chrono::steady_clock::now() + options_.sweep_period;
  while (!quit_) {
    pollfd fds[3] = {
        {wake_fd_, POLLIN, 0}, {conn_->completionFd(), POLLIN, 0}, {events_->fd, POLLIN, 0}};
    int n = ::poll(fds, closed_ ? 1 : 3, static_cast<int>(options_.sweep_period.count()));
    if (n < 0 && errno != EINTR) {
      failConnection(makeError(errno, "poll"));
    }
    if (fds[0].revents != 0) {
      uint64_t count;
      ssize_t ignored = read(wake_fd_, &count, sizeof count);
      (void)ignored;
      std::vector<std::function<void()>> tasks;
      {
        std::lock_guard lock(inbox_mutex_);
        tasks.swap(inbox_);
      }
      for (auto& task : tasks) task();
    }
    if (!closed_ && fds[1].revents != 0) {
      if (auto r = conn_->consumeEvent(); !r) failConnection(r.error());
    }
    // Poll even without an event: cheap, and it catches completions that
    // raced with re-arming the CQ.
    while (!closed_) {
      int got = conn_->poll(wcs);
      if (got <= 0) break;
      for (int i = 0; i < got && !closed_; ++i) onCompletion(wcs[i]);
    }
    if (!closed_ && fds[2].revents != 0) {
      rdma_cm_event* event = nullptr;
      if (rdma_get_cm_event(events_.get(), &event) == 0) {
        std::string what = describeEvent(event);
        rdma_ack_cm_event(event);
        failConnection(makeError(ECONNRESET, "rdma_cm: " + what));
      }
    }
    if (std::chrono::steady_clock::now() >= next_sweep_) {
      sweep();
      next_sweep_ = std::chrono::steady_clock::now() + options_.sweep_period;
    }
  }
}

// NOLINTNEXTLINE(performance-unnecessary-value-param): takes a share of the call, like submit().
void VerbsClientTransport::start(rpc::CallPtr call) {
  if (closed_) {
    call->done(close_error_);
    return;
  }
  auto inserted = table_.insert(call, std::chrono::steady_clock::now() + call->timeout);
  if (!inserted) {
    call->done(inserted.error());
    return;
  }
  rpc::PendingRequest& entry = **inserted;
  call->xid = entry.xid;
  stateOf(entry.xid) = CallResources{};
  counters_.calls.fetch_add(1, std::memory_order_relaxed);
  backlog_.push_back(entry.xid);
  pump();
}

void VerbsClientTransport::pump() {
  while (!closed_ && !backlog_.empty() &&
         outstanding_ < std::min<uint32_t>(params_.credits, options_.max_in_flight)) {
    rpc::PendingRequest* entry = table_.find(backlog_.front());
    if (entry == nullptr) {  // cancelled or timed out while waiting
      backlog_.pop_front();
      continue;
    }
    auto sent = send(*entry);
    if (!sent && sent.error().code == EAGAIN) return;  // no send buffer: retry on completion
    if (closed_) return;  // failConnection completed it and cleared the backlog
    backlog_.pop_front();
    if (!sent) finish(*entry, sent.error());
  }
}

Result<void> VerbsClientTransport::addSegments(
    rpc::PendingRequest& entry, std::span<const iovec> iov, bool remote_write,
    google::protobuf::RepeatedPtrField<rpc::pb::Segment>* out, std::vector<ibv_send_wr>& binds) {
  CallResources& state = stateOf(entry.xid);
  // Windows: the MR grants nothing remote (LOCAL_WRITE only where a
  // read-direction window needs it, IBA C10-74); the window grants one
  // access to one segment. Fallback: the per-call MR grants it.
  uint32_t access =
      use_windows_ ? (remote_write ? iobuf::kLocalWrite | iobuf::kMwBind : uint32_t{iobuf::kMwBind})
                   : (remote_write ? iobuf::kLocalWrite | iobuf::kRemoteWrite
                                   : uint32_t{iobuf::kRemoteRead});
  for (const iovec& v : iov) {
    if (v.iov_len == 0) continue;
    if (static_cast<uint32_t>(out->size()) >= params_.max_segments) {
      return makeError(
          EINVAL, "more iov segments than the negotiated " + std::to_string(params_.max_segments));
    }
    auto ref = cache_->acquire(v.iov_base, v.iov_len, access);
    if (!ref) return ref.error();
    if (ref->hit()) {
      counters_.registration_hits.fetch_add(1, std::memory_order_relaxed);
    } else {
      counters_.registrations.fetch_add(1, std::memory_order_relaxed);
    }
    Exposure exposure{std::move(*ref), -1};
    uint32_t rkey = exposure.registration.keys().rkey;
    auto addr = reinterpret_cast<uint64_t>(v.iov_base);
    if (use_windows_) {
      auto window = windows_->take(entry.xid);
      if (!window) return window.error();
      exposure.window = *window;
      rkey = windows_->nextRkey(*window);
      auto* mr = reinterpret_cast<ibv_mr*>(exposure.registration.keys().handle);
      binds.push_back(RcConnection::makeBindRequest(
          windows_->at(*window).mw.get(), rkey, mr, addr, v.iov_len,
          remote_write ? IBV_ACCESS_REMOTE_WRITE : IBV_ACCESS_REMOTE_READ,
          wrIdOf(windows_->at(*window).bind_work)));
    } else if (exposure.registration.cached()) {
      state.uses_pinned = true;  // only pins are cached without the monitor
    }
    state.exposures.push_back(std::move(exposure));
    auto* seg = out->Add();
    seg->set_addr(addr);
    seg->set_rkey(rkey);
    seg->set_length(static_cast<uint32_t>(v.iov_len));
    state.chunk_capacity += v.iov_len;
  }
  return okResult();
}

Result<void> VerbsClientTransport::send(rpc::PendingRequest& entry) {
  auto slot = conn_->takeSendSlot();
  if (!slot) return slot.error();
  rpc::Call& call = *entry.call;
  CallResources& state = stateOf(entry.xid);
  rpc::pb::Call header = call.header;  // chunk lists are added to a copy
  std::vector<std::byte> inline_payload;
  std::vector<ibv_sge> gather;
  std::vector<ibv_send_wr> binds;
  auto fail = [&](Error e) -> Result<void> {
    conn_->returnSendSlot(*slot);
    release(entry);
    return e;
  };
  if (header.op() == rpc::pb::OP_READ && header.length() > 0) {
    if (call.direct) {
      if (auto r = addSegments(entry, call.destination, /*remote_write=*/true,
                               header.mutable_write_chunks(), binds);
          !r) {
        return fail(r.error());
      }
    } else {
      auto buffers = pool_->getVector(call.reply_capacity);
      if (!buffers) return fail(buffers.error());
      for (const auto& s : buffers->slices()) {
        auto* seg = header.add_write_chunks();
        seg->set_addr(reinterpret_cast<uint64_t>(s.data()));
        seg->set_rkey(s.buf->registration().rkey);
        seg->set_length(static_cast<uint32_t>(s.length));
      }
      if (static_cast<uint32_t>(header.write_chunks_size()) > params_.max_segments) {
        return fail(makeError(EINVAL, "read too large for the negotiated segment count"));
      }
      state.chunk_capacity = buffers->totalLength();
      state.pool_destination = std::move(*buffers);
    }
  } else if (header.op() == rpc::pb::OP_WRITE) {
    uint64_t length = call.payload.totalLength();
    // Staged (pool) payloads are registered already: gathered into the
    // SEND or exposed as read chunks with their own keys, no copy.
    bool staged = !call.payload.empty();
    for (const auto& s : call.payload.slices()) staged = staged && s.buf->registration().lkey != 0;
    if (length <= params_.inline_threshold && staged && call.payload.slices().size() < 16) {
      for (const auto& s : call.payload.slices()) {
        gather.push_back(ibv_sge{reinterpret_cast<uint64_t>(s.data()),
                                 static_cast<uint32_t>(s.length), s.buf->registration().lkey});
      }
    } else if (length <= params_.inline_threshold) {
      // Small user payloads: one copy beats a registration (~25 us on rxe).
      inline_payload.resize(length);
      std::vector<iovec> dst{{inline_payload.data(), inline_payload.size()}};
      call.payload.copyTo(dst);
      counters_.payload_bytes_copied.fetch_add(length, std::memory_order_relaxed);
    } else if (staged) {
      for (const auto& s : call.payload.slices()) {
        auto* seg = header.add_read_chunks();
        seg->set_addr(reinterpret_cast<uint64_t>(s.data()));
        seg->set_rkey(s.buf->registration().rkey);
        seg->set_length(static_cast<uint32_t>(s.length));
      }
      if (static_cast<uint32_t>(header.read_chunks_size()) > params_.max_segments) {
        return fail(makeError(EINVAL, "write too large for the negotiated segment count"));
      }
    } else if (auto r = addSegments(entry, call.payload.toIovecs(), /*remote_write=*/false,
                                    header.mutable_read_chunks(), binds);
               !r) {
      return fail(r.error());
    }
  }
  // Every chunk of a call with windows is one: the server may invalidate the
  // first with its reply, which saves us a LOCAL_INV.
  if (!binds.empty()) header.set_remote_invalidate(true);
  // Room for the binds, the SEND and one LOCAL_INV per window, reserved now
  // so that invalidating never waits for the send queue.
  uint32_t work = static_cast<uint32_t>(2 * binds.size() + 1);
  if (work > sq_free_) return fail(makeError(EAGAIN, "send queue full"));
  std::string bytes;
  header.SerializeToString(&bytes);
  if (!header.path().empty() && rpc::kPreambleSize + bytes.size() > params_.max_message) {
    // Only a path makes a call this big: say so, as the TCP client does.
    return fail(makeError(ENAMETOOLONG, "path of " + std::to_string(header.path().size()) +
                                            " bytes does not fit the peer's message size"));
  }
  uint64_t gathered = 0;
  for (const auto& g : gather) gathered += g.length;
  auto length = gather.empty()
                    ? encodeMessage({conn_->sendBuffer(*slot), params_.max_message},
                                    rpc::FrameType::kCall, entry.xid, bytes, inline_payload)
                    : encodeHeader({conn_->sendBuffer(*slot), params_.max_message},
                                   rpc::FrameType::kCall, entry.xid, bytes, gathered);
  if (!length) return fail(length.error());
  if (*length + gathered > params_.max_message)
    return fail(makeError(EMSGSIZE, "call exceeds the peer's message size"));
  // Awaiting its reply from the moment the SEND may reach the peer: an
  // observer (Call::state) must never see it queued once the peer has it.
  rpc::RequestTable::setState(entry, rpc::CallState::kAwaitingReply);
  if (auto r = conn_->postSend(*slot, *length, gather, binds); !r) {
    conn_->returnSendSlot(*slot);
    failConnection(r.error());  // the binds' state is unknown: the QP goes
    return r.error();
  }
  for (size_t i = 0, w = 0; i < state.exposures.size(); ++i) {
    const Exposure& e = state.exposures[i];
    if (e.window < 0) continue;
    windows_->bound(static_cast<uint32_t>(e.window), binds[w++].bind_mw.rkey);
  }
  sq_free_ -= work;
  slot_work_[*slot] = static_cast<uint32_t>(binds.size() + 1);
  counters_.window_binds.fetch_add(binds.size(), std::memory_order_relaxed);
  ++outstanding_;
  counters_.payload_bytes_sent.fetch_add(call.payload.totalLength(), std::memory_order_relaxed);
  return okResult();
}

void VerbsClientTransport::release(rpc::PendingRequest& entry) {
  CallResources& state = stateOf(entry.xid);
  // Windows never bound (the call failed before its SEND) go straight back;
  // bound ones are invalid by now (finish() saw to it) or dropped with the QP.
  for (Exposure& e : state.exposures) {
    if (e.window < 0) continue;
    auto& w = windows_->at(static_cast<uint32_t>(e.window));
    // A window this call already gave back may serve another call by now.
    if (w.owner != entry.xid) continue;
    if (w.state == MemoryWindowPool::State::kReserved ||
        w.state == MemoryWindowPool::State::kInvalidated) {
      windows_->release(static_cast<uint32_t>(e.window));
    }
  }
  // Dropping the references deregisters per-call registrations: their rkeys
  // are unusable before the call completes. Cached ones stay registered,
  // reachable by no rkey of this call.
  state.exposures.clear();
  state.uses_pinned = false;
  state.pool_destination.clear();
  state.chunk_capacity = 0;
}

void VerbsClientTransport::finish(rpc::PendingRequest& entry, Result<rpc::ReplyData> result) {
  if (entry.state == rpc::CallState::kReleasing) return;  // waiting for its invalidations
  CallResources& state = stateOf(entry.xid);
  if (!result.ok() && sent(entry) && state.uses_pinned && !closed_) {
    // Fallback path: a pre-registered MR keeps its rkey after the call; the
    // only way to stop a late RDMA WRITE into it is to stop the QP before we
    // return. failConnection completes every pending call, this one included.
    failConnection(
        makeError(result.error().code,
                  result.error().what + " (connection closed: it exposed pre-registered memory)"));
    return;
  }
  if (!closed_ && sent(entry)) {
    // Kill every window the peer did not invalidate before the caller hears
    // back: from the LOCAL_INV's completion on, its rkey reaches nothing.
    std::vector<RcConnection::Invalidation> invalidations;
    for (const Exposure& e : state.exposures) {
      if (e.window < 0) continue;
      auto index = static_cast<uint32_t>(e.window);
      auto& w = windows_->at(index);
      if (w.owner != entry.xid || w.state != MemoryWindowPool::State::kBound) continue;
      w.state = MemoryWindowPool::State::kInvalidating;
      invalidations.push_back({w.rkey, wrIdOf(w.invalidate_work)});
    }
    if (!invalidations.empty()) {
      state.invalidations_pending = static_cast<uint32_t>(invalidations.size());
      entry.result = std::move(result);
      rpc::RequestTable::setState(entry, rpc::CallState::kReleasing);
      if (auto r = conn_->postLocalInvalidates(invalidations); !r) failConnection(r.error());
      return;
    }
  }
  complete(entry, std::move(result));
}

void VerbsClientTransport::complete(rpc::PendingRequest& entry, Result<rpc::ReplyData> result) {
  CallResources& state = stateOf(entry.xid);
  if (sent(entry)) --outstanding_;
  // Send-queue room reserved for LOCAL_INVs this call did not need.
  for (const Exposure& e : state.exposures) {
    if (e.window < 0) continue;
    const auto& w = windows_->at(static_cast<uint32_t>(e.window));
    if (w.owner == entry.xid && w.state == MemoryWindowPool::State::kInvalidated) ++sq_free_;
  }
  release(entry);
  state.invalidations_pending = 0;
  rpc::CallPtr call = table_.take(&entry);
  call->done(std::move(result));
  pump();
}

void VerbsClientTransport::onWindowInvalidated(uint32_t index) {
  ++sq_free_;
  counters_.window_local_invalidations.fetch_add(1, std::memory_order_relaxed);
  auto& w = windows_->at(index);
  uint64_t owner = w.owner;
  windows_->release(index);
  rpc::PendingRequest* entry = table_.find(owner);
  if (entry == nullptr) return;
  CallResources& state = stateOf(owner);
  if (entry->state != rpc::CallState::kReleasing || state.invalidations_pending == 0 ||
      --state.invalidations_pending > 0)
    return;
  complete(*entry, std::move(*entry->result));
}

void VerbsClientTransport::onRemoteInvalidation(uint32_t rkey) {
  int64_t index = windows_ ? windows_->findBound(rkey) : -1;
  if (index < 0) {
    // The device invalidated it, so it was live; just not a window we know.
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EPROTO, "server invalidated rkey " + std::to_string(rkey) +
                                         ", which is no window of ours"));
    return;
  }
  windows_->at(static_cast<uint32_t>(index)).state = MemoryWindowPool::State::kInvalidated;
  counters_.window_remote_invalidations.fetch_add(1, std::memory_order_relaxed);
}

namespace {
const char* workName(WorkKind kind) {
  switch (kind) {
    case WorkKind::kReceive:
      return "a receive";
    case WorkKind::kSend:
      return "a send";
    case WorkKind::kBind:
      return "a memory-window bind";
    case WorkKind::kInvalidate:
      return "a memory-window local invalidate";
    default:
      return "a work request";
  }
}
}  // namespace

void VerbsClientTransport::onCompletion(const ibv_wc& wc) {
  if (wc.status != IBV_WC_SUCCESS) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EIO, std::string("work completion ") + statusText(wc) + " on " +
                                      workName(workOf(wc).kind)));
    return;
  }
  const WorkContext& work = workOf(wc);
  switch (work.kind) {
    case WorkKind::kSend: {
      uint32_t slot = work.index;
      sq_free_ += slot_work_[slot];  // the binds before it are done too
      slot_work_[slot] = 0;
      conn_->returnSendSlot(slot);
      pump();
      return;
    }
    case WorkKind::kReceive:
      if (use_windows_ && (wc.wc_flags & invalidate_flags_) != 0) {
        onRemoteInvalidation(wc.invalidated_rkey);
        if (closed_) return;
      }
      onReply(work.index, wc.byte_len);
      return;
    case WorkKind::kInvalidate:
      onWindowInvalidated(work.index);
      return;
    default:
      return;
  }
}

void VerbsClientTransport::onReply(uint32_t slot, uint32_t length) {
  auto message = decodeMessage({conn_->receiveBuffer(slot), length});
  if (!message || message->preamble.type != rpc::FrameType::kReply) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(message ? makeError(EPROTO, "server sent a call, expected a reply")
                           : message.error());
    return;
  }
  rpc::ReplyData reply;
  if (!reply.header.ParseFromArray(message->header.data(),
                                   static_cast<int>(message->header.size()))) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EPROTO, "reply header does not parse"));
    return;
  }
  uint64_t xid = message->preamble.xid;
  auto cls = table_.classify(xid);
  if (cls == rpc::XidClass::kNeverIssued) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(
        makeError(EPROTO, "reply for xid " + std::to_string(xid) + " that was never issued"));
    return;
  }
  std::vector<std::byte> inline_copy(message->payload.begin(), message->payload.end());
  // The buffer goes back to the server's credit at once.
  if (auto r = conn_->postReceive(slot); !r) {
    failConnection(r.error());
    return;
  }
  if (cls == rpc::XidClass::kStale || table_.stateOf(xid) == rpc::CallState::kReleasing) {
    // Finished, or finishing (its windows are being invalidated).
    counters_.late_replies.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  rpc::PendingRequest& entry = *table_.find(xid);
  if (entry.state == rpc::CallState::kQueued) {
    // Still in the backlog: the server cannot answer what it never got.
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EPROTO, "reply for xid " + std::to_string(xid) + ", not yet sent"));
    return;
  }
  rpc::Call& call = *entry.call;
  CallResources& state = stateOf(xid);
  counters_.replies.fetch_add(1, std::memory_order_relaxed);
  if (reply.header.error() != 0) {
    finish(entry, std::move(reply));
    return;
  }
  if (!inline_copy.empty()) {
    // Small replies ride in the SEND and are copied out (counted).
    uint64_t capacity = call.direct ? iobuf::iovLength(call.destination) : call.reply_capacity;
    if (inline_copy.size() > capacity) {
      finish(entry, makeError(EMSGSIZE, "inline reply larger than the destination"));
      return;
    }
    iovec src{inline_copy.data(), inline_copy.size()};
    auto wrapped = iobuf::IoBufVector::wrapUser({&src, 1});
    if (call.direct) {
      wrapped.copyTo(call.destination);
      counters_.payload_bytes_copied.fetch_add(inline_copy.size(), std::memory_order_relaxed);
    } else {
      auto buffers = pool_->getVector(inline_copy.size());
      if (!buffers) {
        finish(entry, buffers.error());
        return;
      }
      std::vector<iovec> dst = buffers->toIovecs();
      wrapped.copyTo(dst);
      reply.payload = std::move(*buffers);
    }
    reply.payload_length = inline_copy.size();
    counters_.payload_bytes_received.fetch_add(inline_copy.size(), std::memory_order_relaxed);
    finish(entry, std::move(reply));
    return;
  }
  uint64_t count = reply.header.count();
  if (call.header.op() == rpc::pb::OP_READ) {
    if (count > state.chunk_capacity) {
      finish(entry, makeError(EPROTO, "server claims " + std::to_string(count) +
                                          " bytes written, more than the chunks hold"));
      return;
    }
    if (!call.direct) {
      reply.payload = std::move(state.pool_destination);
      reply.payload.truncate(count);
    }
    reply.payload_length = count;
    counters_.payload_bytes_received.fetch_add(count, std::memory_order_relaxed);
  }
  finish(entry, std::move(reply));
}

void VerbsClientTransport::failConnection(Error error) {
  if (closed_) return;
  closed_ = true;
  close_error_ = error;
  if (error.code != ESHUTDOWN)
    ZCIO_LOG(kWarn, description_, ": closing connection: ", error.toString());
  // ERROR state first: from here on nothing lands in exposed memory, so
  // windows still bound are unreachable; deallocating them unbinds them from
  // their MRs, which may then be deregistered.
  if (auto stopped = conn_->moveToError(); !stopped) {
    // Without the ERROR state a late RDMA WRITE could still land: destroy
    // the QP, which ends its responder for good.
    ZCIO_LOG(kWarn, description_, ": ", stopped.error().toString(), "; destroying the QP");
    conn_->destroyQueuePair();
  }
  rdma_disconnect(id_.get());
  if (windows_) windows_->dropAll();
  backlog_.clear();
  table_.forEachLive([&](rpc::PendingRequest& entry) {
    // A held result stands: its data (if any) landed before the reply.
    if (entry.state == rpc::CallState::kReleasing) {
      complete(entry, std::move(*entry.result));
    } else {
      complete(entry, error);
    }
  });
}

void VerbsClientTransport::sweep() {
  auto now = std::chrono::steady_clock::now();
  std::optional<uint64_t> stuck;  // a held call whose LOCAL_INVs never came
  table_.forEachLive([&](rpc::PendingRequest& entry) {
    if (entry.deadline > now) return;
    if (entry.state == rpc::CallState::kReleasing) {
      if (entry.deadline + options_.invalidate_grace <= now && !stuck) stuck = entry.xid;
      return;
    }
    counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
    // finish() invalidates (or deregisters) before the caller hears back.
    finish(entry, makeError(ETIMEDOUT, "call timed out"));
  });
  if (!stuck || closed_) return;
  // The QP neither progresses nor errors (a peer that stopped posting
  // receives, ACKs lost for good): the LOCAL_INVs queued behind its stuck
  // work requests will not complete. The ERROR state stops every rkey of
  // this QP instead, so the held calls may complete (invariant 1).
  counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
  failConnection(makeError(ETIMEDOUT, "call " + std::to_string(*stuck) +
                                          ": its memory windows were not invalidated within " +
                                          std::to_string(options_.invalidate_grace.count()) +
                                          " ms of its deadline (the QP does not progress)"));
}

}  // namespace zcio::verbs
