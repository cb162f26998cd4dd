#include "tcp/server.h"

#include <fcntl.h>
#include <unistd.h>

#include <deque>

#include "base/log.h"
#include "tcp/refusal.h"

namespace zcio::tcp {
namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::chrono::milliseconds kAcceptBackoff{100};
// Descriptors held back for refusing at EMFILE: several, so that a few
// clients that connect and send nothing (each held up to kRefusalDeadline)
// do not keep the others from hearing why.
constexpr size_t kReserveFds = 8;
// Refusals in progress at once; beyond it a refused connection is closed
// unanswered (each one holds a descriptor for up to kRefusalDeadline).
constexpr size_t kMaxRefusals = 64;

std::string ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

// True at most once a second; counts what it holds back in `held`.
bool logDue(SteadyClock::time_point& last, uint64_t& held) {
  auto now = SteadyClock::now();
  if (now - last < std::chrono::seconds(1)) {
    ++held;
    return false;
  }
  last = now;
  return true;
}

std::string heldNote(uint64_t& held) {
  if (held == 0) return "";
  std::string note = " (" + std::to_string(held) + " more in the last second not logged)";
  held = 0;
  return note;
}

}  // namespace

// One accepted connection; lives on one io_context thread.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(TcpServer& server, asio::ip::tcp::socket socket, std::string peer,
             AdmissionTicket ticket)
      : server_(server),
        socket_(std::move(socket)),
        read_timer_(socket_.get_executor()),
        write_timer_(socket_.get_executor()),
        peer_(std::move(peer)),
        ticket_(std::move(ticket)) {
    error_code ec;
    socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  }

  void start() {
    session_ = server_.service_.openSession(peer_);
    ZCIO_LOG(kInfo, "connection from ", peer_, " accepted");
    readPreamble();
  }

  asio::any_io_executor executor() { return socket_.get_executor(); }

  // Safe from any thread.
  void closeAsync(std::string reason) {
    asio::post(socket_.get_executor(),
               [self = shared_from_this(), reason = std::move(reason)] { self->close(reason); });
  }

 private:
  struct OutFrame {
    rpc::PreambleBytes preamble{};
    std::string header;
    iobuf::IoBufVector payload;
    uint64_t cost = 0;  // what it counts against max_queued_reply_bytes
  };

  // What the read side is waiting for, and until when (read_deadline_).
  enum class ReadWait { kNone, kIdle, kFrame };

  bool queueFull() const {
    return queued_bytes_ >= server_.options_.max_queued_reply_bytes ||
           queue_.size() >= server_.options_.max_queued_replies;
  }

  void readPreamble() {
    if (closed_) return;
    if (queueFull()) {
      read_paused_ = true;  // resumed when the writer catches up
      setReadDeadline(ReadWait::kNone);
      return;
    }
    setReadDeadline(ReadWait::kIdle);
    asio::async_read(socket_, asio::buffer(rx_preamble_),
                     [self = shared_from_this()](const error_code& ec, size_t n) {
                       if (self->closed_) return;
                       if (ec) {
                         if (ec == asio::error::eof && n == 0) {
                           self->close("peer closed");
                         } else {
                           self->close("truncated preamble (" + std::to_string(n) +
                                       " of 32 bytes): " + ec.message());
                         }
                         return;
                       }
                       self->setReadDeadline(ReadWait::kFrame);
                       self->onPreamble();
                     });
  }

  // Between calls a connection may wait idle_timeout for the next preamble
  // (a connection that never sends one would hold its descriptor forever);
  // from the preamble to the end of the payload a frame must keep moving (a
  // peer that stops mid-frame would pin its buffers). The timer is lazy:
  // setting a deadline costs a clock read, and the timer, when it fires,
  // re-arms for a deadline that moved on.
  void setReadDeadline(ReadWait what) {
    read_wait_ = what;
    std::chrono::milliseconds after{0};
    if (what == ReadWait::kIdle) after = server_.options_.limits.idle_timeout;
    if (what == ReadWait::kFrame) after = server_.options_.frame_stall_timeout;
    if (after.count() <= 0) {
      read_wait_ = ReadWait::kNone;
      return;
    }
    read_deadline_ = SteadyClock::now() + after;
    if (!read_timer_armed_ || read_timer_.expiry() > read_deadline_) armReadTimer();
  }

  void armReadTimer() {
    read_timer_armed_ = true;
    read_timer_.expires_at(read_deadline_);
    read_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec == asio::error::operation_aborted) return;  // re-armed or closed
      self->onReadTimer();
    });
  }

  void onReadTimer() {
    read_timer_armed_ = false;
    if (closed_ || read_wait_ == ReadWait::kNone) return;
    auto now = SteadyClock::now();
    if (read_wait_ == ReadWait::kIdle && !queue_.empty()) {
      // Still writing replies: not idle (the write watchdog covers those).
      read_deadline_ = now + server_.options_.limits.idle_timeout;
    }
    if (now < read_deadline_) return armReadTimer();
    if (read_wait_ == ReadWait::kIdle) {
      close("idle for " + ms(server_.options_.limits.idle_timeout) + " with no call");
    } else {
      close("frame stalled for " + ms(server_.options_.frame_stall_timeout) + " mid-way");
    }
  }

  // A reply write that moves no byte for frame_stall_timeout closes the
  // connection: a client that never reads must not keep it, and the memory
  // queued for it, forever.
  void armWriteTimer() {
    if (write_timer_armed_ || server_.options_.frame_stall_timeout.count() <= 0) return;
    write_timer_armed_ = true;
    write_timer_.expires_at(last_write_progress_ + server_.options_.frame_stall_timeout);
    write_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      self->write_timer_armed_ = false;
      if (ec || self->closed_ || !self->writing_) return;
      auto stalled_for = SteadyClock::now() - self->last_write_progress_;
      if (stalled_for < self->server_.options_.frame_stall_timeout) return self->armWriteTimer();
      self->close(
          "reply write made no progress for " + ms(self->server_.options_.frame_stall_timeout) +
          " (" + std::to_string(self->queue_.size()) + " replies, " +
          std::to_string(self->queued_bytes_) + " bytes queued; the client is not reading)");
    });
  }

  // Asio calls this before each write syscall with the bytes moved so far.
  struct NoteWriteProgress {
    Connection* connection;
    size_t operator()(const error_code& ec, size_t transferred) const {
      if (ec) return 0;
      if (transferred > connection->written_) {
        connection->written_ = transferred;
        connection->last_write_progress_ = SteadyClock::now();
      }
      return kUnlimitedTransfer;
    }
  };

  void onPreamble() {
    auto decoded = rpc::decodePreamble(rx_preamble_, server_.options_.max_payload);
    if (!decoded) {
      protocolError(decoded.error().what);
      return;
    }
    rx_ = *decoded;
    if (rx_.type != rpc::FrameType::kCall) {
      protocolError("frame: client sent a reply, expected a call");
      return;
    }
    rx_header_.resize(rx_.header_length);
    asio::async_read(socket_, asio::buffer(rx_header_),
                     [self = shared_from_this()](const error_code& ec, size_t) {
                       if (self->closed_) return;
                       if (ec) {
                         self->close("truncated frame: " + ec.message());
                         return;
                       }
                       self->onHeader();
                     });
  }

  void onHeader() {
    call_ = rpc::IncomingCall{};
    call_.xid = rx_.xid;
    if (!call_.header.ParseFromArray(rx_header_.data(), static_cast<int>(rx_header_.size()))) {
      protocolError("frame: call header does not parse");
      return;
    }
    if (rx_.payload_length == 0) {
      dispatch();
      return;
    }
    readPayloadChunk();
  }

  // Buffers are taken one chunk at a time as bytes arrive, so a peer that
  // announces a huge payload and sends nothing holds at most one chunk.
  void readPayloadChunk() {
    uint64_t remaining = rx_.payload_length - call_.payload.totalLength();
    if (remaining == 0) {
      dispatch();
      return;
    }
    auto chunk = server_.options_.pool->get();
    if (!chunk) {
      close("cannot buffer the payload: " + chunk.error().toString());
      return;
    }
    size_t n = std::min<uint64_t>(remaining, (*chunk)->size());
    std::byte* data = (*chunk)->data();
    call_.payload.append(std::move(*chunk), 0, n);
    asio::async_read(socket_, asio::buffer(data, n),
                     [self = shared_from_this()](const error_code& ec, size_t) {
                       if (self->closed_) return;
                       if (ec) {
                         self->close("truncated payload: " + ec.message());
                         return;
                       }
                       self->readPayloadChunk();
                     });
  }

  void dispatch() {
    setReadDeadline(ReadWait::kNone);
    server_.counters_.calls.fetch_add(1, std::memory_order_relaxed);
    uint64_t xid = call_.xid;
    auto reply = session_->handle(std::move(call_));
    if (!reply) {
      protocolError(reply.error().what);
      return;
    }
    OutFrame frame;
    reply->header.SerializeToString(&frame.header);
    frame.payload = std::move(reply->payload);
    rpc::Preamble p;
    p.type = rpc::FrameType::kReply;
    p.header_length = static_cast<uint32_t>(frame.header.size());
    p.xid = xid;
    p.payload_length = frame.payload.totalLength();
    frame.preamble = rpc::encodePreamble(p);
    frame.cost =
        frame.preamble.size() + frame.header.size() + p.payload_length + kQueuedFrameOverhead;
    queued_bytes_ += frame.cost;
    queue_.push_back(std::move(frame));
    flush();
    readPreamble();
  }

  void flush() {
    if (writing_ || closed_ || queue_.empty()) return;
    send_buffers_.clear();
    in_flight_ = std::min<size_t>(queue_.size(), 16);
    for (size_t i = 0; i < in_flight_; ++i) {
      OutFrame& f = queue_[i];
      send_buffers_.emplace_back(f.preamble.data(), f.preamble.size());
      send_buffers_.emplace_back(f.header.data(), f.header.size());
      for (const auto& s : f.payload.slices()) send_buffers_.emplace_back(s.data(), s.length);
    }
    writing_ = true;
    written_ = 0;
    last_write_progress_ = SteadyClock::now();
    armWriteTimer();
    asio::async_write(socket_, send_buffers_, NoteWriteProgress{this},
                      [self = shared_from_this()](const error_code& ec, size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (ec) {
                          self->close("send failed: " + ec.message());
                          return;
                        }
                        for (size_t i = 0; i < self->in_flight_; ++i) {
                          self->queued_bytes_ -= self->queue_.front().cost;
                          self->queue_.pop_front();
                        }
                        self->flush();
                        if (self->read_paused_ && !self->queueFull()) {
                          self->read_paused_ = false;
                          self->readPreamble();
                        }
                      });
  }

  void protocolError(const std::string& reason) {
    server_.counters_.protocol_errors.fetch_add(1, std::memory_order_relaxed);
    close("protocol error: " + reason);
  }

  void close(const std::string& reason) {
    if (closed_) return;
    closed_ = true;
    bool clean = reason == "peer closed" || reason == "server stopping";
    if (clean) {
      ZCIO_LOG(kInfo, "connection from ", peer_, " closed: ", reason);
    } else {
      ZCIO_LOG(kWarn, "connection from ", peer_, " closed: ", reason);
    }
    error_code ignored;
    read_timer_.cancel();
    write_timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    session_.reset();  // releases the peer's open files
    queue_.clear();
    queue_.shrink_to_fit();
    send_buffers_ = {};
    rx_header_ = {};
    ticket_.reset();  // its place under the caps is free now
    server_.forget(this);
  }

  TcpServer& server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer read_timer_;
  asio::steady_timer write_timer_;
  std::string peer_;
  AdmissionTicket ticket_;
  ReadWait read_wait_ = ReadWait::kNone;
  SteadyClock::time_point read_deadline_{};
  bool read_timer_armed_ = false;
  bool write_timer_armed_ = false;
  size_t written_ = 0;  // bytes of the current gathered write moved so far
  SteadyClock::time_point last_write_progress_{};
  std::unique_ptr<rpc::ServerSession> session_;
  bool closed_ = false;

  rpc::PreambleBytes rx_preamble_{};
  rpc::Preamble rx_;
  std::vector<char> rx_header_;
  rpc::IncomingCall call_;

  std::deque<OutFrame> queue_;
  std::vector<asio::const_buffer> send_buffers_;
  size_t in_flight_ = 0;
  bool writing_ = false;
  uint64_t queued_bytes_ = 0;
  bool read_paused_ = false;
};

TcpServer::TcpServer(ServerOptions options, rpc::Service& service)
    : options_(std::move(options)), service_(service) {
  if (options_.threads == 0) options_.threads = 1;
  if (!options_.pool) options_.pool = iobuf::BufferPool::create();
}

Result<std::unique_ptr<TcpServer>> TcpServer::start(ServerOptions options, rpc::Service& service) {
  auto server = std::make_unique<TcpServer>(std::move(options), service);
  ZCIO_RETURN_IF_ERROR(server->listen());
  return server;
}

Result<void> TcpServer::listen() {
  for (unsigned i = 0; i < options_.threads; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    guards_.push_back(asio::make_work_guard(*contexts_.back()));
  }
  error_code ec;
  auto address = asio::ip::make_address(options_.host, ec);
  if (ec) return makeError(EINVAL, "listen address '" + options_.host + "': " + ec.message());
  asio::ip::tcp::endpoint endpoint(address, options_.port);
  acceptor_ = std::make_unique<asio::ip::tcp::acceptor>(*contexts_[0]);
  acceptor_->open(endpoint.protocol(), ec);
  if (!ec) acceptor_->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_->bind(endpoint, ec);
  if (!ec) acceptor_->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return makeError(ec.value(), "listen on " + options_.host + ":" +
                                     std::to_string(options_.port) + ": " + ec.message());
  }
  port_ = acceptor_->local_endpoint().port();
  // Non-blocking, so the EMFILE path's one synchronous accept cannot block.
  acceptor_->non_blocking(true, ec);
  accept_backoff_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
  refillReserve();
  if (reserve_fds_.empty()) return makeError(errno, "open /dev/null (the reserve descriptors)");
  accept();
  for (auto& context : contexts_) {
    threads_.emplace_back([c = context.get()] { c->run(); });
  }
  return okResult();
}

void TcpServer::accept() {
  asio::io_context& target = *contexts_[next_context_++ % contexts_.size()];
  acceptor_->async_accept(target, [this](const error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (ec) return onAcceptError(ec);
    onAccepted(std::move(socket));
    accept();
  });
}

void TcpServer::onAccepted(asio::ip::tcp::socket socket) {
  error_code ec;
  auto remote = socket.remote_endpoint(ec);
  if (ec) return;  // gone already (reset before we got to it)
  std::string peer = remote.address().to_string() + ":" + std::to_string(remote.port());
  IpAddress address;
  if (remote.address().is_v4()) {
    address = IpAddress::fromBytes(remote.address().to_v4().to_bytes());
  } else {
    address = IpAddress::fromBytes(remote.address().to_v6().to_bytes());
  }
  auto ticket = admission_.admit(address);
  if (!ticket) return refuse(std::move(socket), ticket.error(), peer);
  auto connection =
      std::make_shared<Connection>(*this, std::move(socket), std::move(peer), std::move(*ticket));
  {
    std::lock_guard lock(connections_mutex_);
    if (stopped_) return;
    connections_.insert(connection);
  }
  counters_.connections.fetch_add(1, std::memory_order_relaxed);
  // Start on the connection's own thread.
  asio::post(connection->executor(), [connection] { connection->start(); });
}

// Out of descriptors, accept() fails at once for as long as a connection
// waits in the backlog: retrying at once spins a core and floods the log.
// Instead: give up the reserve descriptor, accept one waiting client and
// tell it why (EMFILE), and try again after a pause.
void TcpServer::onAcceptError(const error_code& ec) {
  if (!acceptor_->is_open()) return;  // stopping
  counters_.accept_errors.fetch_add(1, std::memory_order_relaxed);
  bool out_of_fds =
      ec == asio::error::no_descriptors || ec == boost::system::errc::too_many_files_open_in_system;
  size_t answered = 0;
  std::string unanswered = out_of_fds ? "; no reserve descriptor free" : "";
  while (out_of_fds && !reserve_fds_.empty()) {
    ::close(reserve_fds_.back());
    reserve_fds_.pop_back();
    error_code again;
    asio::ip::tcp::socket socket(*contexts_[next_context_++ % contexts_.size()]);
    acceptor_->accept(socket, again);  // non-blocking: would_block once none waits
    if (again) {
      if (answered == 0) unanswered = "; could not accept one to answer: " + again.message();
      break;
    }
    auto remote = socket.remote_endpoint(again);
    std::string peer = again ? std::string("?")
                             : remote.address().to_string() + ":" + std::to_string(remote.port());
    refuse(std::move(socket), outOfDescriptorsError(), peer);
    ++answered;
  }
  refillReserve();
  if (logDue(last_accept_log_, accept_errors_unlogged_)) {
    ZCIO_LOG(kWarn, "accept failed: ", ec.message(),
             answered > 0 ? "; told " + std::to_string(answered) + " waiting clients so (EMFILE)"
                          : unanswered,
             heldNote(accept_errors_unlogged_), "; pausing accepts for ", ms(kAcceptBackoff));
  }
  accept_backoff_->expires_after(kAcceptBackoff);
  accept_backoff_->async_wait([this](const error_code& wait_ec) {
    if (wait_ec || !acceptor_->is_open()) return;
    refillReserve();
    accept();
  });
}

void TcpServer::refuse(asio::ip::tcp::socket socket, const Error& why, const std::string& peer) {
  counters_.refused.fetch_add(1, std::memory_order_relaxed);
  auto executor = socket.get_executor();
  if (logDue(last_refusal_log_, refusals_unlogged_)) {
    ZCIO_LOG(kWarn, "connection from ", peer, " refused: ", why.what, heldNote(refusals_unlogged_));
  }
  std::shared_ptr<Refusal> refusal;
  {
    std::lock_guard lock(connections_mutex_);
    if (stopped_ || refusals_.size() >= kMaxRefusals) return;  // closed unanswered
    refusal = std::make_shared<Refusal>(std::move(socket), why, [this](Refusal* done) {
      forget(done);
      // Its descriptor is free again: take it back as the reserve.
      asio::post(*contexts_[0], [this] { refillReserve(); });
    });
    refusals_.insert(refusal);
  }
  asio::post(executor, [refusal] { refusal->start(); });
}

void TcpServer::refillReserve() {
  while (reserve_fds_.size() < kReserveFds) {
    int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;  // later: a refusal's close or the next back-off tick
    reserve_fds_.push_back(fd);
  }
}

void TcpServer::forget(Connection* connection) {
  std::lock_guard lock(connections_mutex_);
  for (auto it = connections_.begin(); it != connections_.end(); ++it) {
    if (it->get() == connection) {
      connections_.erase(it);
      return;
    }
  }
}

void TcpServer::forget(Refusal* refusal) {
  std::lock_guard lock(connections_mutex_);
  for (auto it = refusals_.begin(); it != refusals_.end(); ++it) {
    if (it->get() == refusal) {
      refusals_.erase(it);
      return;
    }
  }
}

void TcpServer::stop() {
  std::set<std::shared_ptr<Connection>> open;
  std::set<std::shared_ptr<Refusal>> refusing;
  {
    std::lock_guard lock(connections_mutex_);
    if (stopped_) return;
    stopped_ = true;
    open = connections_;
    refusing = refusals_;
  }
  asio::post(*contexts_[0], [this] {
    error_code ignored;
    acceptor_->close(ignored);
    accept_backoff_->cancel();
  });
  for (const auto& connection : open) connection->closeAsync("server stopping");
  for (const auto& refusal : refusing) refusal->closeAsync();
  open.clear();
  refusing.clear();
  for (auto& guard : guards_) guard.reset();
  for (auto& thread : threads_) thread.join();
  std::lock_guard lock(connections_mutex_);
  connections_.clear();
  refusals_.clear();
  for (int fd : reserve_fds_) ::close(fd);
  reserve_fds_.clear();
}

TcpServer::~TcpServer() {
  stop();
}

}  // namespace zcio::tcp
