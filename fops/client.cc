#include "fops/client.h"

#include <fcntl.h>

#include <future>

#include "base/log.h"
#include "fops/url.h"
#include "iobuf/buffer_pool.h"
#include "tcp/client_transport.h"
#include "verbs/client_transport.h"

namespace zcio::fops {
namespace {

namespace pb = rpc::pb;

Result<void> replyStatus(const rpc::ReplyData& reply) {
  if (reply.header.error() != 0) {
    return makeError(reply.header.error(), reply.header.message().empty()
                                               ? std::string("server error")
                                               : "server: " + reply.header.message());
  }
  return okResult();
}

uint32_t toWireFlags(int flags) {
  uint32_t wire = 0;
  int access = flags & O_ACCMODE;
  if (access == O_RDONLY || access == O_RDWR) wire |= pb::OPEN_READ;
  if (access == O_WRONLY || access == O_RDWR) wire |= pb::OPEN_WRITE;
  if ((flags & O_CREAT) != 0) wire |= pb::OPEN_CREATE;
  if ((flags & O_TRUNC) != 0) wire |= pb::OPEN_TRUNCATE;
  if ((flags & O_EXCL) != 0) wire |= pb::OPEN_EXCLUSIVE;
  return wire;
}

FileStat toStat(const pb::Attr& a) {
  return FileStat{a.size(), a.mode(), a.mtime_ns(), a.ino()};
}

// Waits for an async completion on the calling thread.
template <typename T>
Result<T> waitFor(std::future<Result<T>>& future) {
  return future.get();
}

}  // namespace

Client::Client(std::unique_ptr<rpc::Transport> transport, ClientOptions options)
    : transport_(std::move(transport)), options_(options) {}

Client::~Client() {
  if (transport_) transport_->shutdown();
}

Result<std::unique_ptr<Client>> Client::connect(const std::string& text, ClientOptions options) {
  auto url = parseUrl(text);
  if (!url) return url.error();
  if (url->scheme == "rdma" || url->scheme == "auto") {
    auto transport = verbs::VerbsClientTransport::connect(url->host, url->port, options.rdma);
    if (transport) return std::make_unique<Client>(std::move(*transport), options);
    if (url->scheme == "rdma") return transport.error();
    ZCIO_LOG(kInfo, "auto: RDMA to ", url->host, ":", url->port, " not viable (",
             transport.error().toString(), "); using TCP");
  }
  tcp::ClientOptions topts;
  topts.table_capacity = options.max_in_flight;
  auto transport = tcp::TcpClientTransport::connect(url->host, url->port, topts);
  if (!transport) return transport.error();
  return std::make_unique<Client>(std::move(*transport), options);
}

rpc::CallPtr Client::makeCall(pb::Op op, HeaderCallback done) {
  auto call = std::make_shared<rpc::Call>();
  call->header.set_op(op);
  call->timeout = options_.timeout;
  call->done = std::move(done);
  return call;
}

Result<rpc::ReplyData> Client::roundTrip(rpc::CallPtr call) {
  std::promise<Result<rpc::ReplyData>> promise;
  auto future = promise.get_future();
  call->done = [&promise](Result<rpc::ReplyData> r) { promise.set_value(std::move(r)); };
  requests_.fetch_add(1, std::memory_order_relaxed);
  transport_->submit(call);
  auto reply = future.get();
  if (!reply) return reply.error();
  ZCIO_RETURN_IF_ERROR(replyStatus(*reply));
  return reply;
}

Result<FileHandle> Client::open(const std::string& path, int flags, mode_t mode) {
  auto call = makeCall(pb::OP_OPEN, nullptr);
  call->header.set_path(path);
  call->header.set_flags(toWireFlags(flags));
  call->header.set_mode(mode);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  return FileHandle{reply->header.fh()};
}

Result<FileStat> Client::stat(const std::string& path) {
  auto call = makeCall(pb::OP_STAT, nullptr);
  call->header.set_path(path);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  return toStat(reply->header.attr());
}

Result<FileStat> Client::fstat(FileHandle fh) {
  auto call = makeCall(pb::OP_FSTAT, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  return toStat(reply->header.attr());
}

Result<void> Client::fsync(FileHandle fh) {
  auto call = makeCall(pb::OP_FSYNC, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  return okResult();
}

Result<void> Client::close(FileHandle fh) {
  auto call = makeCall(pb::OP_CLOSE, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  return okResult();
}

AsyncCall Client::preadvAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset,
                              IoMode mode, IoCallback done) {
  uint64_t length = iobuf::iovLength(iov);
  if (length > maxIoSize()) {
    done(makeError(EINVAL, "read of " + std::to_string(length) + " bytes exceeds " +
                               std::to_string(maxIoSize())));
    return {};
  }
  auto call = makeCall(pb::OP_READ, nullptr);
  call->header.set_fh(fh);
  call->header.set_offset(offset);
  call->header.set_length(length);
  call->reply_capacity = length;
  call->direct = mode == IoMode::kDirect;
  // Regular reads keep the iov too: it is where the one copy goes.
  call->destination.assign(iov.begin(), iov.end());
  rpc::Call* raw = call.get();
  call->done = [this, raw, done = std::move(done)](Result<rpc::ReplyData> reply) {
    if (!reply) return done(reply.error());
    if (auto status = replyStatus(*reply); !status) return done(status.error());
    if (reply->header.count() != reply->payload_length) {
      return done(makeError(EPROTO, "read reply count disagrees with its payload length"));
    }
    uint64_t n = reply->payload_length;
    if (!raw->direct) {
      size_t copied = reply->payload.copyTo(raw->destination);
      bytes_copied_.fetch_add(copied, std::memory_order_relaxed);
    }
    bytes_read_.fetch_add(n, std::memory_order_relaxed);
    done(static_cast<size_t>(n));
  };
  requests_.fetch_add(1, std::memory_order_relaxed);
  transport_->submit(call);
  return AsyncCall(call);
}

AsyncCall Client::pwritevAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset,
                               IoMode mode, IoCallback done) {
  uint64_t length = iobuf::iovLength(iov);
  if (length > maxIoSize()) {
    done(makeError(EINVAL, "write of " + std::to_string(length) + " bytes exceeds " +
                               std::to_string(maxIoSize())));
    return {};
  }
  auto call = makeCall(pb::OP_WRITE, nullptr);
  call->header.set_fh(fh);
  call->header.set_offset(offset);
  call->header.set_length(length);
  if (mode == IoMode::kDirect) {
    call->payload = iobuf::IoBufVector::wrapUser(iov);
  } else {
    auto buffers = transport_->payloadPool()->getVector(length);
    if (!buffers) {
      done(buffers.error());
      return {};
    }
    // The regular path's copy: the caller's iov is free once this returns.
    std::vector<iovec> dst = buffers->toIovecs();
    iobuf::IoBufVector source = iobuf::IoBufVector::wrapUser(iov);
    bytes_copied_.fetch_add(source.copyTo(dst), std::memory_order_relaxed);
    call->payload = std::move(*buffers);
  }
  call->done = [this, done = std::move(done)](Result<rpc::ReplyData> reply) {
    if (!reply) return done(reply.error());
    if (auto status = replyStatus(*reply); !status) return done(status.error());
    bytes_written_.fetch_add(reply->header.count(), std::memory_order_relaxed);
    done(static_cast<size_t>(reply->header.count()));
  };
  requests_.fetch_add(1, std::memory_order_relaxed);
  transport_->submit(call);
  return AsyncCall(call);
}

void Client::cancel(const AsyncCall& call) {
  if (call.call()) transport_->cancel(call.call());
}

namespace {
template <typename Start>
Result<size_t> runSync(Start&& start) {
  std::promise<Result<size_t>> promise;
  auto future = promise.get_future();
  start([&promise](Result<size_t> r) { promise.set_value(std::move(r)); });
  return future.get();
}
}  // namespace

Result<size_t> Client::preadv(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { preadvAsync(fh, iov, offset, IoMode::kRegular, std::move(cb)); });
}

Result<size_t> Client::preadvDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { preadvAsync(fh, iov, offset, IoMode::kDirect, std::move(cb)); });
}

Result<size_t> Client::pwritev(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { pwritevAsync(fh, iov, offset, IoMode::kRegular, std::move(cb)); });
}

Result<size_t> Client::pwritevDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { pwritevAsync(fh, iov, offset, IoMode::kDirect, std::move(cb)); });
}

ClientStats Client::stats() const {
  const auto& t = transport_->counters();
  ClientStats s;
  s.requests = requests_.load();
  s.bytes_read = bytes_read_.load();
  s.bytes_written = bytes_written_.load();
  s.bytes_copied = bytes_copied_.load() + t.payload_bytes_copied.load();
  s.late_replies = t.late_replies.load();
  s.bytes_discarded = t.bytes_discarded.load();
  s.timeouts = t.timeouts.load();
  s.cancels = t.cancels.load();
  s.protocol_errors = t.protocol_errors.load();
  s.registrations = t.registrations.load();
  s.registration_hits = t.registration_hits.load();
  return s;
}

Result<void> Client::registerMemory(void* addr, size_t length) {
  return transport_->registerMemory(addr, length);
}

Result<void> Client::deregisterMemory(void* addr, size_t length) {
  return transport_->deregisterMemory(addr, length);
}

std::string Client::describe() const {
  return transport_->describe();
}

}  // namespace zcio::fops
