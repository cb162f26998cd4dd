#include "tcp/client_transport.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

#include "base/log.h"

namespace zcio::tcp {
namespace {

Error asioError(const error_code& ec, const std::string& what) {
  int code = ec.category() == boost::system::system_category() ? ec.value() : EIO;
  if (ec == asio::error::eof) code = ECONNRESET;
  return makeError(code, what + ": " + ec.message());
}

constexpr size_t kMaxGatherFrames = 16;

// How long the connection may move no byte while a timed-out or cancelled
// call stays pinned (its reply payload half received, or its frame half
// sent) before the peer counts as stalled and the connection is closed: a
// timeout must bound the call even when the peer stops sending or reading
// mid-frame. Counted from the last byte moved, not from the timeout, so a
// peer that froze mid-frame ends the call at its timeout, not 2 s later.
constexpr auto kStallGrace = std::chrono::seconds(2);

// Bytes per recvmsg(): a larger one holds the socket lock while it copies,
// so arriving segments wait in the backlog and ACKs go out late (1 MiB reads
// at 8 in flight lost 15% of their MB/s to 256 KiB recvmsg()s on 2 cores).
constexpr uint64_t kMaxRecv = 64 * 1024;

}  // namespace

TcpClientTransport::TcpClientTransport(ClientOptions options)
    : options_(std::move(options)),
      work_(asio::make_work_guard(io_)),
      socket_(io_),
      sweep_timer_(io_),
      table_(options_.table_capacity),
      frames_(table_.capacity()),
      scratch_(256 * 1024) {
  if (!options_.pool) options_.pool = iobuf::BufferPool::create();
  if (options_.receive_piece == 0) options_.receive_piece = 256 * 1024;
}

Result<std::unique_ptr<TcpClientTransport>> TcpClientTransport::connect(const std::string& host,
                                                                        uint16_t port,
                                                                        ClientOptions options) {
  auto transport = std::make_unique<TcpClientTransport>(std::move(options));
  ZCIO_RETURN_IF_ERROR(transport->open(host, port));
  return transport;
}

Result<void> TcpClientTransport::open(const std::string& host, uint16_t port) {
  error_code ec;
  asio::ip::tcp::resolver resolver(io_);
  auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return asioError(ec, "resolve " + host);
  // Connect with a deadline so a black-holed address cannot hang the caller.
  bool done = false;
  asio::async_connect(socket_, endpoints, [&](const error_code& e, const asio::ip::tcp::endpoint&) {
    ec = e;
    done = true;
  });
  asio::steady_timer deadline(io_, options_.connect_timeout);
  deadline.async_wait([&](const error_code& e) {
    if (!e) socket_.cancel();
  });
  while (!done && io_.run_one() > 0) {
  }
  deadline.cancel();
  io_.poll();
  io_.restart();
  if (ec) {
    if (ec == asio::error::operation_aborted) {
      return makeError(ETIMEDOUT, "connect to " + host + ":" + std::to_string(port) + " timed out");
    }
    return asioError(ec, "connect to " + host + ":" + std::to_string(port));
  }
  // Asio registered the socket for EPOLLOUT to connect, edge-triggered, and
  // keeps that for the socket's life: every ACK would then wake the io
  // thread. A fresh registration of the same connection watches only
  // EPOLLIN (EPOLLOUT comes back only if a write ever has to wait).
  int fd = ::dup(socket_.native_handle());
  if (fd < 0) return makeError(errno, std::string("dup: ") + std::strerror(errno));
  auto protocol = socket_.local_endpoint(ec).protocol();
  socket_.close(ec);
  socket_.assign(protocol, fd, ec);
  if (ec) {
    ::close(fd);
    return asioError(ec, "socket");
  }
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  auto local = socket_.local_endpoint(ec);
  auto remote = socket_.remote_endpoint(ec);
  description_ = "tcp " + local.address().to_string() + ":" + std::to_string(local.port()) +
                 " -> " + remote.address().to_string() + ":" + std::to_string(remote.port());
  noteProgress();
  readPreamble();
  asio::post(io_, [this] { locked([this] { receive(); }); });
  thread_ = std::thread([this] { io_.run(); });
  return okResult();
}

TcpClientTransport::~TcpClientTransport() {
  shutdown();
}

template <typename Fn>
void TcpClientTransport::locked(Fn&& fn) {
  Completions done;
  {
    std::lock_guard lock(state_mutex_);
    fn();
    done.swap(completions_);
  }
  runCompletions(done);
}

void TcpClientTransport::runCompletions(Completions& done) {
  for (auto& [call, result] : done) call->done(std::move(result));
}

void TcpClientTransport::submit(rpc::CallPtr call) {
  // Started on the caller's thread: the frame is usually on the wire before
  // this returns, with no hop to the io thread (one wake-up less per call).
  Completions failed;
  {
    std::lock_guard life(lifecycle_mutex_);
    if (!stopping_) {
      {
        std::lock_guard lock(state_mutex_);
        start(std::move(call));
        failed.swap(completions_);
      }
      if (failed.empty()) return;
      if (!io_.get_executor().running_in_this_thread()) {
        // Completions run on the transport's thread, errors included.
        asio::post(io_, [this, failed = std::move(failed)]() mutable { runCompletions(failed); });
        return;
      }
    }
  }
  if (!failed.empty()) {
    runCompletions(failed);
    return;
  }
  // Reached only when stopping_ (the started path returns above), so `call` was not moved.
  // NOLINTNEXTLINE(bugprone-use-after-move,clang-analyzer-cplusplus.Move)
  call->done(makeError(ESHUTDOWN, "transport is shut down"));
}

void TcpClientTransport::cancel(rpc::CallPtr call) {
  std::lock_guard lock(lifecycle_mutex_);
  if (stopping_) return;
  asio::post(io_, [this, call = std::move(call)] {
    locked([&] {
      rpc::PendingRequest* entry = table_.find(call->xid);
      if (entry == nullptr || entry->call != call) return;  // already completed
      counters_.cancels.fetch_add(1, std::memory_order_relaxed);
      abandon(*entry, makeError(ECANCELED, "call cancelled"));
    });
  });
}

void TcpClientTransport::shutdown() {
  {
    std::lock_guard lock(lifecycle_mutex_);
    if (stopping_) return;
    stopping_ = true;
    asio::post(io_, [this] {
      locked([this] {
        failConnection(makeError(ESHUTDOWN, "transport is shut down"));
        sweep_timer_.cancel();
      });
    });
    work_.reset();
  }
  if (thread_.joinable()) thread_.join();
}

void TcpClientTransport::start(rpc::CallPtr call) {
  if (closed_) {
    completions_.emplace_back(std::move(call), close_error_);
    return;
  }
  auto deadline = std::chrono::steady_clock::now() + call->timeout;
  auto inserted = table_.insert(call, deadline);
  if (!inserted) {
    completions_.emplace_back(std::move(call), inserted.error());
    return;
  }
  rpc::PendingRequest& entry = **inserted;  // kQueued
  call->xid = entry.xid;
  SlotFrame& frame = frameOf(entry.xid);
  frame.on_wire = false;
  call->header.SerializeToString(&frame.header);
  if (frame.header.size() > rpc::kMaxHeaderLength) {
    // The server would reset the connection for it: only this call fails.
    finish(entry,
           makeError(EMSGSIZE, "call header of " + std::to_string(frame.header.size()) +
                                   " bytes exceeds " + std::to_string(rpc::kMaxHeaderLength)));
    return;
  }
  rpc::Preamble p;
  p.type = rpc::FrameType::kCall;
  p.header_length = static_cast<uint32_t>(frame.header.size());
  p.xid = entry.xid;
  p.payload_length = call->payload.totalLength();
  frame.preamble = rpc::encodePreamble(p);
  counters_.calls.fetch_add(1, std::memory_order_relaxed);
  send_queue_.push_back(entry.xid);
  flushSends();
  armSweep();
}

void TcpClientTransport::flushSends() {
  while (!writing_ && !closed_ && !send_queue_.empty()) {
    send_buffers_.clear();
    sending_batch_.clear();
    size_t taken = 0;
    size_t total = 0;
    for (; taken < send_queue_.size() && sending_batch_.size() < kMaxGatherFrames; ++taken) {
      uint64_t xid = send_queue_[taken];
      rpc::PendingRequest* entry = table_.find(xid);
      if (entry == nullptr) continue;  // cancelled before it reached the wire
      SlotFrame& frame = frameOf(xid);
      frame.on_wire = true;
      rpc::RequestTable::setState(*entry, rpc::CallState::kSending);
      send_buffers_.emplace_back(frame.preamble.data(), frame.preamble.size());
      send_buffers_.emplace_back(frame.header.data(), frame.header.size());
      total += frame.preamble.size() + frame.header.size();
      for (const auto& s : entry->call->payload.slices()) {
        send_buffers_.emplace_back(s.data(), s.length);
        total += s.length;
      }
      sending_batch_.push_back(xid);
    }
    send_queue_.erase(send_queue_.begin(), send_queue_.begin() + static_cast<long>(taken));
    if (sending_batch_.empty()) return;
    auto sent = sendNow();
    if (!sent) {
      failConnection(sent.error());
      return;
    }
    if (*sent == total) {  // all on the wire: no write handler, no io-thread wake-up
      std::vector<uint64_t> batch;
      batch.swap(sending_batch_);
      onSent(batch);
      continue;
    }
    skipSent(*sent);
    writing_ = true;
    // The condition runs after each partial write: it keeps the progress
    // clock the stall check reads.
    auto condition = [this](const error_code& ec, size_t sent_so_far) -> size_t {
      if (ec) return 0;
      if (sent_so_far > 0) noteProgress();
      return kUnlimitedTransfer;
    };
    asio::async_write(socket_, send_buffers_, condition, [this](const error_code& ec, size_t) {
      locked([&] {
        writing_ = false;
        if (closed_) return;
        if (ec) {
          failConnection(asioError(ec, "send to server"));
          return;
        }
        // Taken out first: onSent may start the next write (via a parked
        // reply's completion once the lock is let go), which refills
        // sending_batch_.
        std::vector<uint64_t> sent;
        sent.swap(sending_batch_);
        onSent(sent);
        flushSends();
      });
    });
    return;
  }
}

// One non-blocking sendmsg() of send_buffers_: how much the socket took.
Result<size_t> TcpClientTransport::sendNow() {
  std::vector<iovec>& iov = send_iov_;
  iov.clear();
  for (const auto& b : send_buffers_) {
    if (iov.size() == IOV_MAX) break;
    iov.push_back({const_cast<void*>(b.data()), b.size()});
  }
  msghdr msg{};
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  for (;;) {
    ssize_t n = ::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) noteProgress();
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return size_t{0};
    return makeError(errno, std::string("send to server: ") + std::strerror(errno));
  }
}

// Drops the first n bytes of send_buffers_ (they are on the wire).
void TcpClientTransport::skipSent(size_t n) {
  size_t i = 0;
  while (i < send_buffers_.size() && n >= send_buffers_[i].size()) n -= send_buffers_[i++].size();
  send_buffers_.erase(send_buffers_.begin(), send_buffers_.begin() + static_cast<long>(i));
  if (n > 0) send_buffers_.front() += n;
}

void TcpClientTransport::onSent(const std::vector<uint64_t>& xids) {
  for (uint64_t xid : xids) {
    rpc::PendingRequest* entry = table_.find(xid);
    if (entry == nullptr) continue;
    frameOf(xid).on_wire = false;
    uint64_t bytes = entry->call->payload.totalLength();
    counters_.payload_bytes_sent.fetch_add(bytes, std::memory_order_relaxed);
    switch (entry->state) {
      case rpc::CallState::kSending:
        rpc::RequestTable::setState(*entry, rpc::CallState::kAwaitingReply);
        break;
      case rpc::CallState::kReleasing:  // a result waited for this write
        if (!memoryInUse(*entry)) finish(*entry, std::move(*entry->result));
        break;
      default:  // kReceiving: the reply overtook this handler; it completes
        break;
    }
  }
}

// Whether the write in progress or the receive still uses the call's memory.
bool TcpClientTransport::memoryInUse(const rpc::PendingRequest& entry) {
  return frameOf(entry.xid).on_wire || (rx_stage_ == RxStage::kPayload && rx_xid_ == entry.xid);
}

void TcpClientTransport::settle(rpc::PendingRequest& entry, Result<rpc::ReplyData> result) {
  if (!memoryInUse(entry)) {
    finish(entry, std::move(result));
    return;
  }
  // Completion waits for the piece boundary (receive) or the end of the
  // write (send); from now on the deadline is the stall limit (sweep()).
  entry.result = std::move(result);
  entry.deadline = lastProgress() + kStallGrace;
  rpc::RequestTable::setState(entry, rpc::CallState::kReleasing);
}

// Cancel, timeout or a failed receive: the error is the result, unless one
// is decided already. Not on the wire, or sent and waiting: nothing touches
// the caller's memory, so it completes now (a late reply finds a stale xid
// and is drained).
void TcpClientTransport::abandon(rpc::PendingRequest& entry, Error error) {
  if (entry.state == rpc::CallState::kReleasing) return;
  settle(entry, std::move(error));
}

void TcpClientTransport::noteProgress() {
  last_progress_.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                       std::memory_order_relaxed);
}

std::chrono::steady_clock::time_point TcpClientTransport::lastProgress() const {
  return std::chrono::steady_clock::time_point(
      std::chrono::steady_clock::duration(last_progress_.load(std::memory_order_relaxed)));
}

void TcpClientTransport::finish(rpc::PendingRequest& entry, Result<rpc::ReplyData> result) {
  rpc::CallPtr call = table_.take(&entry);
  completions_.emplace_back(std::move(call), std::move(result));  // run once the lock is let go
}

// ---- receive path -------------------------------------------------------

void TcpClientTransport::receive() {
  size_t budget = std::max<size_t>(options_.receive_budget, 1);
  while (!closed_) {
    if (rx_stage_ == RxStage::kPayload) {
      rpc::PendingRequest& entry = *table_.find(rx_xid_);  // pinned: cannot vanish
      // A piece boundary: a result decided meanwhile (cancel) takes effect.
      if (rx_remaining_ == 0 || entry.state == rpc::CallState::kReleasing) {
        onPayloadDone();
        if (!completions_.empty()) {
          // Completions run now, not after the next replies: they are what
          // issues the next calls, and the server must not run out of them.
          asio::post(io_, [this] {
            locked([this] {
              if (!closed_) receive();
            });
          });
          return;
        }
        continue;
      }
    }
    if (prepareWindow() == 0) {  // an empty header or a finished drain
      advance(0);
      continue;
    }
    if (budget == 0) {  // let sends, cancels and the sweep run, then go on
      asio::post(io_, [this] {
        locked([this] {
          if (!closed_) receive();
        });
      });
      return;
    }
    msghdr msg{};
    msg.msg_iov = rx_window_.data();
    msg.msg_iovlen = rx_window_.size();
    ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT);
    if (n > 0) {
      noteProgress();
      budget -= std::min(budget, static_cast<size_t>(n));
      advance(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EFAULT && rx_stage_ == RxStage::kPayload) {
      // A direct read into memory that is not mapped. recvmsg() consumed
      // none of the bytes it could not copy, so the stream is still in step:
      // the rest of this reply is drained and only this call fails.
      abandon(*table_.find(rx_xid_),
              makeError(EFAULT, "receive reply payload: destination not mapped"));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      waitReadable();
      return;
    }
    static constexpr const char* kWhat[] = {"receive from server", "receive reply header",
                                            "receive reply payload", "drain reply payload"};
    std::string what = kWhat[static_cast<int>(rx_stage_)];
    failConnection(n == 0 ? makeError(ECONNRESET, what + ": connection closed by the server")
                          : makeError(errno, what + ": " + std::strerror(errno)));
    return;
  }
}

void TcpClientTransport::waitReadable() {
  socket_.async_wait(asio::ip::tcp::socket::wait_read, [this](const error_code& ec) {
    locked([&] {
      if (closed_) return;
      if (ec) {
        failConnection(asioError(ec, "wait for the server"));
        return;
      }
      receive();
    });
  });
}

// Fills rx_window_ with where the stage's next bytes go; returns how many.
size_t TcpClientTransport::prepareWindow() {
  rx_window_.clear();
  switch (rx_stage_) {
    case RxStage::kPreamble:
      rx_window_.push_back({rx_preamble_.data() + rx_done_, rx_preamble_.size() - rx_done_});
      break;
    case RxStage::kHeader:
      if (rx_done_ < rx_header_.size())
        rx_window_.push_back({rx_header_.data() + rx_done_, rx_header_.size() - rx_done_});
      break;
    case RxStage::kPayload: {
      // The next window of the destination, at most receive_piece bytes.
      uint64_t want = std::min<uint64_t>({rx_remaining_, options_.receive_piece, kMaxRecv});
      size_t index = rx_iov_index_;
      size_t offset = rx_iov_offset_;
      uint64_t planned = 0;
      while (planned < want && index < rx_iov_.size() && rx_window_.size() < IOV_MAX) {
        size_t n = std::min<uint64_t>(rx_iov_[index].iov_len - offset, want - planned);
        if (n > 0)
          rx_window_.push_back({static_cast<std::byte*>(rx_iov_[index].iov_base) + offset, n});
        planned += n;
        ++index;
        offset = 0;
      }
      break;
    }
    case RxStage::kDrain:
      if (rx_remaining_ > 0)
        rx_window_.push_back({scratch_.data(), std::min<uint64_t>(rx_remaining_, scratch_.size())});
      break;
  }
  size_t total = 0;
  for (const auto& v : rx_window_) total += v.iov_len;
  return total;
}

// Accounts for n bytes that landed in rx_window_; moves to the next stage when
// this one is complete.
void TcpClientTransport::advance(size_t n) {
  switch (rx_stage_) {
    case RxStage::kPreamble:
      rx_done_ += n;
      if (rx_done_ == rx_preamble_.size()) onPreamble();
      return;
    case RxStage::kHeader:
      rx_done_ += n;
      if (rx_done_ == rx_header_.size()) onHeader();
      return;
    case RxStage::kPayload:
      rx_remaining_ -= n;
      counters_.payload_bytes_received.fetch_add(n, std::memory_order_relaxed);
      while (n > 0) {  // step the destination cursor over what arrived
        size_t step = std::min(rx_iov_[rx_iov_index_].iov_len - rx_iov_offset_, n);
        n -= step;
        rx_iov_offset_ += step;
        if (rx_iov_offset_ == rx_iov_[rx_iov_index_].iov_len) {
          ++rx_iov_index_;
          rx_iov_offset_ = 0;
        }
      }
      return;  // receive() completes the payload at the piece boundary
    case RxStage::kDrain:
      rx_remaining_ -= n;
      counters_.bytes_discarded.fetch_add(n, std::memory_order_relaxed);
      if (rx_remaining_ == 0) readPreamble();
      return;
  }
}

void TcpClientTransport::readPreamble() {
  rx_stage_ = RxStage::kPreamble;
  rx_done_ = 0;
}

void TcpClientTransport::onPreamble() {
  auto decoded = rpc::decodePreamble(rx_preamble_, options_.max_payload);
  if (!decoded) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(decoded.error());
    return;
  }
  rx_frame_ = *decoded;
  if (rx_frame_.type != rpc::FrameType::kReply) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EPROTO, "frame: server sent a call, expected a reply"));
    return;
  }
  rx_header_.resize(rx_frame_.header_length);
  rx_stage_ = RxStage::kHeader;
  rx_done_ = 0;
}

void TcpClientTransport::onHeader() {
  rx_reply_ = rpc::ReplyData{};
  if (!rx_reply_.header.ParseFromArray(rx_header_.data(), static_cast<int>(rx_header_.size()))) {
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(EPROTO, "frame: reply header does not parse"));
    return;
  }
  uint64_t xid = rx_frame_.xid;
  uint64_t length = rx_frame_.payload_length;
  switch (table_.classify(xid)) {
    case rpc::XidClass::kNeverIssued:
      counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
      failConnection(makeError(
          EPROTO, "frame: reply for xid " + std::to_string(xid) + " that was never issued"));
      return;
    case rpc::XidClass::kStale:
      // The call timed out or was cancelled: its memory is no longer ours.
      counters_.late_replies.fetch_add(1, std::memory_order_relaxed);
      ZCIO_LOG(kDebug, "late reply for xid ", xid, ", draining ", length, " bytes");
      drain(length);
      return;
    case rpc::XidClass::kLive:
      break;
  }
  rpc::PendingRequest& entry = *table_.find(xid);
  rpc::Call& call = *entry.call;
  if (entry.state == rpc::CallState::kReceiving || entry.state == rpc::CallState::kQueued) {
    // The server cannot answer a frame we have not begun to write.
    counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    failConnection(makeError(
        EPROTO, std::string("frame: ") +
                    (entry.state == rpc::CallState::kQueued ? "reply for a call not yet sent, xid "
                                                            : "second reply for xid ") +
                    std::to_string(xid)));
    return;
  }
  counters_.replies.fetch_add(1, std::memory_order_relaxed);
  if (entry.state == rpc::CallState::kReleasing) {  // decided while its frame was on the wire
    drain(length);
    return;
  }
  uint64_t capacity = call.direct ? iobuf::iovLength(call.destination) : call.reply_capacity;
  if (length > capacity) {
    // Never write past (or into) a destination that cannot hold the reply.
    abandon(entry, makeError(EMSGSIZE, "reply payload of " + std::to_string(length) +
                                           " bytes exceeds the destination's " +
                                           std::to_string(capacity)));
    drain(length);
    return;
  }
  rx_reply_.payload_length = length;
  rx_xid_ = xid;
  rx_remaining_ = length;
  rx_iov_index_ = 0;
  rx_iov_offset_ = 0;
  if (call.direct) {
    rx_iov_ = call.destination;
  } else {
    auto buffers = options_.pool->getVector(length);
    if (!buffers) {
      abandon(entry, buffers.error());
      drain(length);
      return;
    }
    rx_reply_.payload = std::move(*buffers);
    rx_iov_ = rx_reply_.payload.toIovecs();
  }
  rpc::RequestTable::setState(entry, rpc::CallState::kReceiving);  // pin
  rx_stage_ = RxStage::kPayload;
}

void TcpClientTransport::onPayloadDone() {
  rpc::PendingRequest& entry = *table_.find(rx_xid_);
  uint64_t rest = rx_remaining_;
  rx_iov_.clear();
  // Unpinned from here: the stage moves on before the completion runs (it
  // may submit, and nothing here may touch the finished call afterwards).
  if (entry.state == rpc::CallState::kReleasing) {
    rx_reply_ = rpc::ReplyData{};
    drain(rest);
    if (!memoryInUse(entry)) finish(entry, std::move(*entry.result));
    return;
  }
  readPreamble();
  // If the reply overtook our own write completion handler, the call's
  // payload memory is still referenced until that handler runs: held.
  settle(entry, std::move(rx_reply_));
  rx_reply_ = rpc::ReplyData{};
}

void TcpClientTransport::drain(uint64_t bytes) {
  if (bytes == 0) {
    readPreamble();
    return;
  }
  rx_stage_ = RxStage::kDrain;
  rx_remaining_ = bytes;
}

void TcpClientTransport::failConnection(Error error) {
  if (closed_) return;
  closed_ = true;
  close_error_ = error;
  if (error.code != ESHUTDOWN) {
    ZCIO_LOG(kWarn, description_, ": closing connection: ", error.toString());
  }
  // Closing cancels every outstanding read and write before any completion
  // below runs, so no further byte moves into or out of caller memory.
  error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  sweep_timer_.cancel();
  // A held result stands: the socket is closed, so its memory is free.
  table_.forEachLive([&](rpc::PendingRequest& entry) {
    frameOf(entry.xid).on_wire = false;
    finish(entry, entry.state == rpc::CallState::kReleasing ? std::move(*entry.result)
                                                            : Result<rpc::ReplyData>(error));
  });
  send_queue_.clear();
}

// ---- timeouts -----------------------------------------------------------

void TcpClientTransport::armSweep() {
  if (sweep_armed_ || closed_) return;
  sweep_armed_ = true;
  sweep_timer_.expires_after(options_.sweep_period);
  sweep_timer_.async_wait([this](const error_code& ec) {
    locked([&] {
      sweep_armed_ = false;
      if (ec || closed_) return;
      sweep();
    });
  });
}

void TcpClientTransport::sweep() {
  auto now = std::chrono::steady_clock::now();
  bool stalled = false;
  table_.forEachLive([&](rpc::PendingRequest& entry) {
    if (entry.deadline > now) return;
    if (entry.state == rpc::CallState::kReleasing) {  // still pinned, nothing moved for kStallGrace
      stalled = true;
      return;
    }
    counters_.timeouts.fetch_add(1, std::memory_order_relaxed);
    abandon(entry, makeError(ETIMEDOUT, "call timed out"));
  });
  if (stalled) {
    // Closing the socket is the only safe way to let go of the caller's
    // memory in the middle of a frame; every pending call fails.
    failConnection(makeError(ETIMEDOUT, "peer stalled mid-frame: no byte moved for " +
                                            std::to_string(kStallGrace.count()) +
                                            " s while an abandoned call was pinned"));
    return;
  }
  if (table_.inUse() > 0) armSweep();
}

}  // namespace zcio::tcp
