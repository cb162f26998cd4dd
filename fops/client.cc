#include "fops/client.h"

#include <fcntl.h>

#include <climits>

#include <algorithm>
#include <cstdlib>
#include <future>
#include <optional>
#include <tuple>

#include "fops/sync_waiter.h"
#include "fops/url.h"
#include "iobuf/buffer_pool.h"
#include "rpc/auth_client.h"
#include "rpc/frame.h"
#include "transport/connect.h"

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

// What preadv(2)/pwritev(2) refuse before any byte moves, so a bad argument
// fails one call instead of faulting in a copy or ending the connection.
// Returns the total length.
Result<uint64_t> checkIo(const char* what, std::span<const iovec> iov, uint64_t offset) {
  if (iov.size() > IOV_MAX) {
    return makeError(EINVAL, std::string(what) + ": " + std::to_string(iov.size()) +
                                 " iovecs exceed IOV_MAX (" + std::to_string(IOV_MAX) + ")");
  }
  uint64_t total = 0;
  for (size_t i = 0; i < iov.size(); ++i) {
    if (iov[i].iov_base == nullptr && iov[i].iov_len != 0) {
      return makeError(EFAULT, std::string(what) + ": iov[" + std::to_string(i) +
                                   "] has a NULL base and a nonzero length");
    }
    if (iov[i].iov_len > static_cast<uint64_t>(SSIZE_MAX) - total) {
      return makeError(EINVAL, std::string(what) + ": iov lengths overflow ssize_t");
    }
    total += iov[i].iov_len;
  }
  if (offset > static_cast<uint64_t>(LLONG_MAX) ||
      total > static_cast<uint64_t>(LLONG_MAX) - offset) {
    return makeError(EINVAL, std::string(what) + ": offset " + std::to_string(offset) +
                                 " + length overflows a file offset");
  }
  if (total > Client::maxIoSize()) {
    return makeError(EINVAL, std::string(what) + " of " + std::to_string(total) +
                                 " bytes exceeds " + std::to_string(Client::maxIoSize()));
  }
  return total;
}

// A path-carrying call whose header would not fit the frame limit: the path
// is its only field of unbounded size.
Result<void> checkHeader(const pb::Call& header) {
  if (header.ByteSizeLong() <= rpc::kMaxHeaderLength) return okResult();
  if (!header.path().empty()) {
    return makeError(ENAMETOOLONG, "path of " + std::to_string(header.path().size()) +
                                       " bytes does not fit a call header");
  }
  return makeError(EMSGSIZE,
                   "call header exceeds " + std::to_string(rpc::kMaxHeaderLength) + " bytes");
}

}  // namespace

Client::Client(std::unique_ptr<rpc::Transport> transport, ClientOptions options)
    : transport_(std::move(transport)), options_(std::move(options)) {
  if (options_.io_cache_bytes >= IoCache::kPageSize) {
    cache_ = std::make_unique<IoCache>(options_.io_cache_bytes);
  }
  if (options_.write_behind) {
    WriteBehindOptions wb;
    wb.aggregate_bytes = std::max<uint64_t>(1, options_.write_behind_aggregate_bytes);
    wb.window_bytes = options_.write_behind_window_bytes;
    wb.delay = options_.write_behind_delay;
    write_behind_ = std::make_unique<WriteBehind>(
        wb, [this](uint64_t fh, const std::shared_ptr<std::vector<uint8_t>>& data, uint64_t offset,
                   WriteBehind::Done done) {
          // The staging buffer is already the copy; it is sent as it is (no
          // second copy) and kept alive until the call completes.
          iovec v{data->data(), data->size()};
          uint64_t key = fileInfo(fh).cache_key;
          sendWrite(
              fh, {&v, 1}, offset, IoMode::kDirect,
              [this, key, offset, n = data->size()] {
                if (cache_) cache_->purge(key, offset, n);
              },
              [data, done = std::move(done)](Result<size_t> r) { done(std::move(r)); });
        });
  }
}

Client::~Client() {
  shutdown();
}

void Client::shutdown() {
  // Unsent write-behind data is sent (best effort) before the connection goes.
  if (write_behind_) write_behind_->drain(options_.timeout);
  if (transport_) transport_->shutdown();
}

Client::FileInfo Client::fileInfo(FileHandle fh) {
  std::lock_guard lock(files_mutex_);
  auto it = files_.find(fh);
  if (it != files_.end()) return it->second;
  return FileInfo{(1ull << 63) | fh, FileOptions{}};
}

void Client::observeAttr(const pb::Attr& attr) {
  if (cache_) cache_->observeAttr(attr.ino(), attr.size(), attr.mtime_ns());
}

void Client::waitBarrier(FileHandle fh, uint64_t offset, uint64_t length) {
  if (!write_behind_) return;
  std::promise<void> promise;
  auto future = promise.get_future();
  uint64_t key = fileInfo(fh).cache_key;
  if (write_behind_->barrier(key, offset, length, [&promise] { promise.set_value(); })) return;
  future.wait();
}

Result<void> Client::setFileOptions(FileHandle fh, FileOptions options) {
  if (!options.write_behind) waitBarrier(fh, 0, 0);
  std::lock_guard lock(files_mutex_);
  auto it = files_.find(fh);
  if (it == files_.end()) return makeError(EBADF, "setFileOptions: handle not opened here");
  it->second.options = options;
  return okResult();
}

Result<std::unique_ptr<Client>> Client::connect(const std::string& text, ClientOptions options) {
  auto url = parseUrl(text);
  if (!url) return url.error();
  std::optional<rpc::SharedKey> key;
  if (options.key_file.empty()) {
    if (const char* env = std::getenv("ZCIO_KEY_FILE"); env != nullptr && *env != '\0') {
      options.key_file = env;
    }
  }
  if (!options.key_file.empty()) {
    auto loaded = rpc::SharedKey::load(options.key_file);
    if (!loaded) return loaded.error();
    key = std::move(*loaded);
  }
  // No call goes out before both sides have authenticated.
  auto ready = [&](std::unique_ptr<rpc::Transport> transport) -> Result<std::unique_ptr<Client>> {
    auto authenticated = rpc::authenticate(*transport, key ? &*key : nullptr, options.timeout);
    if (!authenticated) {
      transport->shutdown();
      return authenticated.error();
    }
    return std::make_unique<Client>(std::move(transport), options);
  };
  transport::TransportOptions transport_options;
  transport_options.connect_timeout = options.connect_timeout;
  transport_options.max_in_flight = options.max_in_flight;
  transport_options.rdma = options.rdma;
  auto transport =
      transport::connectTransport(url->scheme, url->host, url->port, transport_options);
  if (!transport) return transport.error();
  return ready(std::move(*transport));
}

rpc::CallPtr Client::makeCall(pb::Op op, HeaderCallback done) {
  auto call = std::make_shared<rpc::Call>();
  call->header.set_op(op);
  call->timeout = options_.timeout;
  call->done = std::move(done);
  return call;
}

// NOLINTNEXTLINE(performance-unnecessary-value-param): takes a share of the call, like submit().
Result<rpc::ReplyData> Client::roundTrip(rpc::CallPtr call) {
  ZCIO_RETURN_IF_ERROR(checkHeader(call->header));
  SyncWaiter<Result<rpc::ReplyData>> waiter(options_.sync_spin);
  call->done = [&waiter](Result<rpc::ReplyData> r) { waiter.set(std::move(r)); };
  requests_.fetch_add(1, std::memory_order_relaxed);
  transport_->submit(call);
  auto reply = waiter.wait();
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
  FileHandle fh = reply->header.fh();
  if (reply->header.has_attr()) observeAttr(reply->header.attr());
  {
    std::lock_guard lock(files_mutex_);
    FileInfo info;
    info.cache_key = reply->header.has_attr() ? reply->header.attr().ino() : (1ull << 63) | fh;
    files_[fh] = info;
  }
  return fh;
}

Result<FileStat> Client::stat(const std::string& path) {
  auto call = makeCall(pb::OP_STAT, nullptr);
  call->header.set_path(path);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  observeAttr(reply->header.attr());
  return toStat(reply->header.attr());
}

Result<FileStat> Client::fstat(FileHandle fh) {
  if (write_behind_) {
    if (auto e = write_behind_->error(fh)) return *e;
  }
  auto call = makeCall(pb::OP_FSTAT, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (!reply) return reply.error();
  observeAttr(reply->header.attr());
  return toStat(reply->header.attr());
}

Result<void> Client::fsync(FileHandle fh) {
  // Write-behind data first; its error (if any) wins over the fsync's own.
  waitBarrier(fh, 0, 0);
  std::optional<Error> deferred;
  if (write_behind_) deferred = write_behind_->takeError(fh);
  auto call = makeCall(pb::OP_FSYNC, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (deferred) return *deferred;
  if (!reply) return reply.error();
  return okResult();
}

Result<void> Client::close(FileHandle fh) {
  waitBarrier(fh, 0, 0);
  std::optional<Error> deferred;
  if (write_behind_) {
    deferred = write_behind_->takeError(fh);
    write_behind_->forget(fileInfo(fh).cache_key);
  }
  auto call = makeCall(pb::OP_CLOSE, nullptr);
  call->header.set_fh(fh);
  auto reply = roundTrip(call);
  if (reply) {
    std::lock_guard lock(files_mutex_);
    files_.erase(fh);
  }
  if (deferred) return *deferred;
  if (!reply) return reply.error();
  return okResult();
}

AsyncCall Client::preadvAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset,
                              IoMode mode, IoCallback done) {
  auto checked = checkIo("read", iov, offset);
  if (!checked) {
    done(checked.error());
    return {};
  }
  uint64_t length = *checked;
  std::vector<iovec> dst(iov.begin(), iov.end());
  if (write_behind_) {
    if (auto e = write_behind_->error(fh)) {
      done(*e);
      return {};
    }
    // An overlapping read sends staged writes and waits for them. While it
    // waits, the read cannot be cancelled (the AsyncCall is empty).
    auto deferred = std::make_shared<std::pair<std::vector<iovec>, IoCallback>>(dst, done);
    uint64_t key = fileInfo(fh).cache_key;
    bool clear = write_behind_->barrier(key, offset, length, [this, fh, offset, mode, deferred] {
      sendRead(fh, std::move(deferred->first), offset, mode, std::move(deferred->second));
    });
    if (!clear) return {};
  }
  return sendRead(fh, std::move(dst), offset, mode, std::move(done));
}

AsyncCall Client::sendRead(FileHandle fh, std::vector<iovec> iov, uint64_t offset, IoMode mode,
                           IoCallback done) {
  uint64_t length = iobuf::iovLength(iov);
  IoCache* cache = nullptr;
  uint64_t key = 0;
  uint64_t generation = 0;
  if (cache_) {
    FileInfo info = fileInfo(fh);
    key = info.cache_key;
    if (mode == IoMode::kDirect) {
      // Bypass, and purge what it overlaps: later regular reads see the
      // server's bytes.
      cache_->purge(key, offset, length);
    } else if (info.options.io_cache && length > 0) {
      if (cache_->lookup(key, iov, offset)) {
        bytes_copied_.fetch_add(length, std::memory_order_relaxed);
        bytes_read_.fetch_add(length, std::memory_order_relaxed);
        done(static_cast<size_t>(length));
        return {};
      }
      cache = cache_.get();
      generation = cache_->generation(key);
    }
  }
  auto call = makeCall(pb::OP_READ, nullptr);
  call->header.set_fh(fh);
  call->header.set_offset(offset);
  call->header.set_length(length);
  call->reply_capacity = length;
  call->direct = mode == IoMode::kDirect;
  // Regular reads keep the iov too: it is where the one copy goes.
  call->destination = std::move(iov);
  rpc::Call* raw = call.get();
  call->done = [this, raw, cache, key, generation, offset,
                done = std::move(done)](Result<rpc::ReplyData> reply) {
    if (!reply) return done(reply.error());
    if (auto status = replyStatus(*reply); !status) return done(status.error());
    if (reply->header.count() != reply->payload_length) {
      return done(makeError(EPROTO, "read reply count disagrees with its payload length"));
    }
    uint64_t n = reply->payload_length;
    if (!raw->direct) {
      size_t copied = reply->payload.copyTo(raw->destination);
      bytes_copied_.fetch_add(copied, std::memory_order_relaxed);
      if (cache != nullptr) {
        uint64_t filled = cache->fill(key, generation, raw->destination, offset, n);
        bytes_copied_.fetch_add(filled, std::memory_order_relaxed);
      }
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
  auto checked = checkIo("write", iov, offset);
  if (!checked) {
    done(checked.error());
    return {};
  }
  uint64_t length = *checked;
  FileInfo info;
  if (cache_ || write_behind_) info = fileInfo(fh);
  std::function<void()> purge;
  if (cache_) {
    // Purged when sent and again when done: a regular read answered in
    // between cannot leave pages older than this write behind.
    cache_->purge(info.cache_key, offset, length);
    purge = [this, key = info.cache_key, offset, length] { cache_->purge(key, offset, length); };
  }
  if (write_behind_) {
    if (auto e = write_behind_->error(fh)) {
      done(*e);
      return {};
    }
    if (mode == IoMode::kRegular && info.options.write_behind) {
      size_t n = write_behind_->write(info.cache_key, fh, iov, offset);
      bytes_copied_.fetch_add(n, std::memory_order_relaxed);
      // Acknowledged early, but not beyond the window (back-pressure).
      write_behind_->acknowledge([done = std::move(done), n] { done(n); });
      return {};
    }
    if (mode == IoMode::kDirect) {
      // The barrier: earlier overlapping write-behind writes land first.
      // The caller's iov stays valid until `done` (a direct write's rule),
      // so it is kept by reference while waiting, never copied.
      auto deferred =
          std::make_shared<std::tuple<std::vector<iovec>, std::function<void()>, IoCallback>>(
              std::vector<iovec>(iov.begin(), iov.end()), purge, done);
      bool clear =
          write_behind_->barrier(info.cache_key, offset, length, [this, fh, offset, deferred] {
            auto& [v, p, d] = *deferred;
            sendWrite(fh, v, offset, IoMode::kDirect, std::move(p), std::move(d));
          });
      if (!clear) return {};
    }
  }
  return sendWrite(fh, iov, offset, mode, std::move(purge), std::move(done));
}

AsyncCall Client::sendWrite(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                            std::function<void()> on_complete, IoCallback done) {
  uint64_t length = iobuf::iovLength(iov);
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
  call->done = [this, length, on_complete = std::move(on_complete),
                done = std::move(done)](Result<rpc::ReplyData> reply) {
    if (on_complete) on_complete();
    if (!reply) return done(reply.error());
    if (auto status = replyStatus(*reply); !status) return done(status.error());
    // A caller advances its buffer by the result: a count above what was
    // sent (found by the client fuzzer) must never reach it.
    if (reply->header.count() > length) {
      return done(makeError(EPROTO, "write reply claims " + std::to_string(reply->header.count()) +
                                        " bytes written of " + std::to_string(length)));
    }
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

template <typename Start>
Result<size_t> Client::runSync(Start&& start) {
  SyncWaiter<Result<size_t>> waiter(options_.sync_spin);
  start([&waiter](Result<size_t> r) { waiter.set(std::move(r)); });
  return waiter.wait();
}

Result<size_t> Client::preadv(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { preadvAsync(fh, iov, offset, IoMode::kRegular, std::move(cb)); });
}

Result<size_t> Client::preadvDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  return runSync(
      [&](IoCallback cb) { preadvAsync(fh, iov, offset, IoMode::kDirect, std::move(cb)); });
}

Result<size_t> Client::pwritev(FileHandle fh, std::span<const iovec> iov, uint64_t offset) {
  if (write_behind_) write_behind_->throttle();
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
  if (cache_) {
    s.io_cache_hits = cache_->hits();
    s.io_cache_misses = cache_->misses();
    s.io_cache_purges = cache_->purges();
  }
  if (write_behind_) {
    s.writes_collapsed = write_behind_->collapsed();
    s.write_behind_flushes = write_behind_->flushes();
  }
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
