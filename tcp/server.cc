#include "tcp/server.h"

#include <deque>

#include "base/log.h"

namespace zcio::tcp {

// One accepted connection; lives on one io_context thread.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(TcpServer& server, asio::ip::tcp::socket socket)
      : server_(server), socket_(std::move(socket)), stall_timer_(socket_.get_executor()) {
    error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    peer_ =
        ec ? std::string("?") : remote.address().to_string() + ":" + std::to_string(remote.port());
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
  };

  void readPreamble() {
    if (closed_) return;
    if (queued_bytes_ > server_.options_.max_queued_reply_bytes) {
      read_paused_ = true;  // resumed when the writer catches up
      return;
    }
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
                       self->armStallTimer();
                       self->onPreamble();
                     });
  }

  // From the preamble to the end of the payload a frame must keep moving;
  // a peer that stops mid-frame would otherwise pin its buffers forever.
  void armStallTimer() {
    stall_timer_.expires_after(server_.options_.frame_stall_timeout);
    stall_timer_.async_wait([self = shared_from_this()](const error_code& ec) {
      if (ec || self->closed_) return;
      self->close("frame stalled for " +
                  std::to_string(self->server_.options_.frame_stall_timeout.count()) +
                  " ms mid-way");
    });
  }

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
    stall_timer_.cancel();
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
    queued_bytes_ += p.payload_length;
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
    asio::async_write(socket_, send_buffers_, TransferAllUpTo{kUnlimitedTransfer},
                      [self = shared_from_this()](const error_code& ec, size_t) {
                        self->writing_ = false;
                        if (self->closed_) return;
                        if (ec) {
                          self->close("send failed: " + ec.message());
                          return;
                        }
                        for (size_t i = 0; i < self->in_flight_; ++i) {
                          self->queued_bytes_ -= self->queue_.front().payload.totalLength();
                          self->queue_.pop_front();
                        }
                        self->flush();
                        if (self->read_paused_ &&
                            self->queued_bytes_ <= self->server_.options_.max_queued_reply_bytes) {
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
    stall_timer_.cancel();
    socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    session_.reset();  // releases the peer's open files
    queue_.clear();
    server_.forget(this);
  }

  TcpServer& server_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer stall_timer_;
  std::string peer_;
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
    if (ec) {
      ZCIO_LOG(kWarn, "accept failed: ", ec.message());
    } else {
      auto connection = std::make_shared<Connection>(*this, std::move(socket));
      {
        std::lock_guard lock(connections_mutex_);
        if (stopped_) return;
        connections_.insert(connection);
      }
      counters_.connections.fetch_add(1, std::memory_order_relaxed);
      // Start on the connection's own thread.
      asio::post(connection->executor(), [connection] { connection->start(); });
    }
    accept();
  });
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

void TcpServer::stop() {
  std::set<std::shared_ptr<Connection>> open;
  {
    std::lock_guard lock(connections_mutex_);
    if (stopped_) return;
    stopped_ = true;
    open = connections_;
  }
  asio::post(*contexts_[0], [this] {
    error_code ignored;
    acceptor_->close(ignored);
  });
  for (auto& connection : open) connection->closeAsync("server stopping");
  open.clear();
  for (auto& guard : guards_) guard.reset();
  for (auto& thread : threads_) thread.join();
  std::lock_guard lock(connections_mutex_);
  connections_.clear();
}

TcpServer::~TcpServer() {
  stop();
}

}  // namespace zcio::tcp
