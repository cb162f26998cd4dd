// The C API: thin wrappers that turn Result<T> into -1/errno.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <new>

#include "fops/client.h"
#include "fops/zcio.h"

struct zcio_client {
  std::unique_ptr<zcio::fops::Client> client;
};

struct zcio_fd {
  zcio_client* owner;
  zcio::fops::FileHandle fh;
};

namespace {

template <typename T>
bool failed(const zcio::Result<T>& r) {
  if (r.ok()) return false;
  errno = r.error().code;
  return true;
}

bool badArgs(bool bad) {
  if (bad) errno = EINVAL;
  return bad;
}

template <typename Fn>
ssize_t io(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset, Fn fn) {
  if (badArgs(fd == nullptr || iovcnt < 0 || (iov == nullptr && iovcnt > 0) || offset < 0)) {
    return -1;
  }
  std::span<const iovec> span(iov, static_cast<size_t>(iovcnt));
  auto r = fn(*fd->owner->client, fd->fh, span, static_cast<uint64_t>(offset));
  if (failed(r)) return -1;
  return static_cast<ssize_t>(*r);
}

}  // namespace

extern "C" {

zcio_client_t* zcio_connect(const char* url) {
  if (badArgs(url == nullptr)) return nullptr;
  auto client = zcio::fops::Client::connect(url);
  if (failed(client)) return nullptr;
  return new (std::nothrow) zcio_client{std::move(*client)};
}

void zcio_options_init(struct zcio_options* options) {
  if (options == nullptr) return;
  zcio::fops::ClientOptions d;
  *options = zcio_options{static_cast<uint32_t>(d.timeout.count()),
                          d.io_cache_bytes,
                          d.write_behind ? 1 : 0,
                          d.write_behind_aggregate_bytes,
                          d.write_behind_window_bytes,
                          static_cast<uint32_t>(d.write_behind_delay.count()),
                          static_cast<uint32_t>(d.sync_spin.count())};
}

zcio_client_t* zcio_connect_with(const char* url, const struct zcio_options* options) {
  if (badArgs(url == nullptr || options == nullptr || options->timeout_ms == 0)) return nullptr;
  zcio::fops::ClientOptions o;
  o.timeout = std::chrono::milliseconds(options->timeout_ms);
  o.io_cache_bytes = options->io_cache_bytes;
  o.write_behind = options->write_behind != 0;
  o.write_behind_aggregate_bytes = options->write_behind_aggregate_bytes;
  o.write_behind_window_bytes = options->write_behind_window_bytes;
  o.write_behind_delay = std::chrono::milliseconds(options->write_behind_delay_ms);
  o.sync_spin = std::chrono::microseconds(options->sync_spin_us);
  auto client = zcio::fops::Client::connect(url, o);
  if (failed(client)) return nullptr;
  return new (std::nothrow) zcio_client{std::move(*client)};
}

int zcio_set_file_options(zcio_fd_t* fd, int io_cache, int write_behind) {
  if (badArgs(fd == nullptr)) return -1;
  zcio::fops::FileOptions o{io_cache != 0, write_behind != 0};
  return failed(fd->owner->client->setFileOptions(fd->fh, o)) ? -1 : 0;
}

int zcio_disconnect(zcio_client_t* client) {
  if (badArgs(client == nullptr)) return -1;
  delete client;
  return 0;
}

zcio_fd_t* zcio_open(zcio_client_t* client, const char* path, int flags, mode_t mode) {
  if (badArgs(client == nullptr || path == nullptr)) return nullptr;
  auto fh = client->client->open(path, flags, mode);
  if (failed(fh)) return nullptr;
  return new (std::nothrow) zcio_fd{client, *fh};
}

int zcio_close(zcio_fd_t* fd) {
  if (badArgs(fd == nullptr)) return -1;
  auto r = fd->owner->client->close(fd->fh);
  delete fd;  // freed even on error, as close(2) does
  return failed(r) ? -1 : 0;
}

int zcio_fsync(zcio_fd_t* fd) {
  if (badArgs(fd == nullptr)) return -1;
  return failed(fd->owner->client->fsync(fd->fh)) ? -1 : 0;
}

int zcio_stat(zcio_client_t* client, const char* path, struct stat* st) {
  if (badArgs(client == nullptr || path == nullptr || st == nullptr)) return -1;
  auto r = client->client->stat(path);
  if (failed(r)) return -1;
  std::memset(st, 0, sizeof *st);
  st->st_size = static_cast<off_t>(r->size);
  st->st_mode = r->mode;
  st->st_ino = r->ino;
  st->st_mtim.tv_sec = r->mtime_ns / 1000000000;
  st->st_mtim.tv_nsec = r->mtime_ns % 1000000000;
  return 0;
}

ssize_t zcio_preadv(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset) {
  return io(fd, iov, iovcnt, offset,
            [](auto& c, auto fh, auto s, auto o) { return c.preadv(fh, s, o); });
}

ssize_t zcio_preadv_direct(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset) {
  return io(fd, iov, iovcnt, offset,
            [](auto& c, auto fh, auto s, auto o) { return c.preadvDirect(fh, s, o); });
}

ssize_t zcio_pwritev(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset) {
  return io(fd, iov, iovcnt, offset,
            [](auto& c, auto fh, auto s, auto o) { return c.pwritev(fh, s, o); });
}

ssize_t zcio_pwritev_direct(zcio_fd_t* fd, const struct iovec* iov, int iovcnt, off_t offset) {
  return io(fd, iov, iovcnt, offset,
            [](auto& c, auto fh, auto s, auto o) { return c.pwritevDirect(fh, s, o); });
}

int zcio_get_stats(zcio_client_t* client, struct zcio_stats* out) {
  if (badArgs(client == nullptr || out == nullptr)) return -1;
  auto s = client->client->stats();
  *out = zcio_stats{s.requests,
                    s.bytes_read,
                    s.bytes_written,
                    s.bytes_copied,
                    s.late_replies,
                    s.timeouts,
                    s.cancels,
                    s.protocol_errors,
                    s.io_cache_hits,
                    s.io_cache_misses,
                    s.io_cache_purges,
                    s.writes_collapsed,
                    s.write_behind_flushes};
  return 0;
}

int zcio_register_memory(zcio_client_t* client, void* addr, size_t length) {
  if (badArgs(client == nullptr || addr == nullptr || length == 0)) return -1;
  return failed(client->client->registerMemory(addr, length)) ? -1 : 0;
}

int zcio_deregister_memory(zcio_client_t* client, void* addr, size_t length) {
  if (badArgs(client == nullptr || addr == nullptr || length == 0)) return -1;
  return failed(client->client->deregisterMemory(addr, length)) ? -1 : 0;
}

}  // extern "C"
