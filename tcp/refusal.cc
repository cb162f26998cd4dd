#include "tcp/refusal.h"

#include "rpc/service.h"

namespace zcio::tcp {

Refusal::Refusal(asio::ip::tcp::socket socket, Error why, std::function<void(Refusal*)> done)
    : socket_(std::move(socket)),
      deadline_(socket_.get_executor()),
      why_(std::move(why)),
      done_(std::move(done)) {}

void Refusal::start() {
  deadline_.expires_after(kRefusalDeadline);
  deadline_.async_wait([self = shared_from_this()](const error_code& ec) {
    if (!ec) self->finish();
  });
  asio::async_read(socket_, asio::buffer(preamble_),
                   [self = shared_from_this()](const error_code& ec, size_t) {
                     if (self->finished_) return;
                     if (ec) return self->finish();
                     self->onPreamble();
                   });
}

void Refusal::closeAsync() {
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->finish(); });
}

void Refusal::onPreamble() {
  // Not a zcio call (or one over the limits): nothing to answer.
  auto decoded = rpc::decodePreamble(preamble_);
  if (!decoded || decoded->type != rpc::FrameType::kCall) return finish();
  call_ = *decoded;
  header_.resize(call_.header_length);
  asio::async_read(socket_, asio::buffer(header_),
                   [self = shared_from_this()](const error_code& ec, size_t) {
                     if (self->finished_) return;
                     if (ec) return self->finish();
                     self->onHeader();
                   });
}

void Refusal::onHeader() {
  // The header need not parse: the reply only needs the xid.
  std::string header;
  rpc::errorReply(why_.code, why_.what).header.SerializeToString(&header);
  rpc::Preamble p;
  p.type = rpc::FrameType::kReply;
  p.header_length = static_cast<uint32_t>(header.size());
  p.xid = call_.xid;
  auto preamble = rpc::encodePreamble(p);
  reply_.assign(reinterpret_cast<const char*>(preamble.data()), preamble.size());
  reply_ += header;
  asio::async_write(socket_, asio::buffer(reply_),
                    [self = shared_from_this()](const error_code& ec, size_t) {
                      if (self->finished_) return;
                      if (ec) return self->finish();
                      error_code ignored;
                      self->socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
                      self->drain();
                    });
}

void Refusal::drain() {
  socket_.async_read_some(asio::buffer(scratch_),
                          [self = shared_from_this()](const error_code& ec, size_t) {
                            if (self->finished_) return;
                            if (ec) return self->finish();  // EOF: the client has the reply
                            self->drain();
                          });
}

void Refusal::finish() {
  if (finished_) return;
  finished_ = true;
  error_code ignored;
  deadline_.cancel();
  socket_.close(ignored);
  if (done_) std::exchange(done_, nullptr)(this);
}

}  // namespace zcio::tcp
