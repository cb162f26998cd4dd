// The C API: thin wrappers that turn Result<T> into -1/errno.
//
// zcio_client_t* and zcio_fd_t* are not pointers to objects: each packs a
// table index, the slot's generation and a type tag into the pointer value,
// and is only ever looked up, never dereferenced. A closed, disconnected or
// made-up handle therefore fails with EBADF instead of touching freed memory,
// and a call holds a reference to its client (shared_ptr) for as long as it
// runs, so zcio_disconnect in another thread frees nothing under it.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <vector>

#include "fops/client.h"
#include "fops/zcio.h"

namespace {

static_assert(sizeof(void*) == 8, "handles pack index and generation into 64 bits");

struct ClientEntry {
  explicit ClientEntry(std::unique_ptr<zcio::fops::Client> c) : client(std::move(c)) {}
  std::unique_ptr<zcio::fops::Client> client;
  std::atomic<bool> connected{true};
};

struct FdEntry {
  std::shared_ptr<ClientEntry> owner;
  zcio::fops::FileHandle fh = 0;
};

// Slots of shared objects, addressed by handles (generation << 32) |
// (index << 2) | Tag. A slot's generation changes each time it is emptied,
// so an old handle to a reused slot no longer matches.
template <typename T, uintptr_t Tag>
class HandleTable {
 public:
  static constexpr uint32_t kMaxSlots = 1u << 30;

  // 0 when the table is full.
  uintptr_t add(std::shared_ptr<T> object) {
    std::lock_guard lock(mutex_);
    uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      if (slots_.size() >= kMaxSlots) return 0;
      index = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    slots_[index].object = std::move(object);
    return (static_cast<uintptr_t>(slots_[index].generation) << 32) |
           (static_cast<uintptr_t>(index) << 2) | Tag;
  }

  std::shared_ptr<T> find(uintptr_t handle) {
    std::lock_guard lock(mutex_);
    Slot* slot = slotOf(handle);
    return slot != nullptr ? slot->object : nullptr;
  }

  // Empties the slot; the object lives on while others hold it.
  std::shared_ptr<T> take(uintptr_t handle) {
    std::lock_guard lock(mutex_);
    Slot* slot = slotOf(handle);
    if (slot == nullptr) return nullptr;
    return release(*slot, static_cast<uint32_t>((handle >> 2) & (kMaxSlots - 1)));
  }

  // Empties every slot whose object matches; returns the objects (destroyed
  // by the caller, outside the lock).
  template <typename Pred>
  std::vector<std::shared_ptr<T>> takeIf(Pred&& pred) {
    std::vector<std::shared_ptr<T>> taken;
    std::lock_guard lock(mutex_);
    for (uint32_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].object && pred(*slots_[i].object)) taken.push_back(release(slots_[i], i));
    }
    return taken;
  }

 private:
  struct Slot {
    uint32_t generation = 1;
    std::shared_ptr<T> object;
  };

  Slot* slotOf(uintptr_t handle) {
    if ((handle & 3) != Tag) return nullptr;
    uint64_t index = (handle >> 2) & (kMaxSlots - 1);
    auto generation = static_cast<uint32_t>(handle >> 32);
    if (index >= slots_.size()) return nullptr;
    Slot& slot = slots_[index];
    if (!slot.object || slot.generation != generation) return nullptr;
    return &slot;
  }

  std::shared_ptr<T> release(Slot& slot, uint32_t index) {
    std::shared_ptr<T> object = std::move(slot.object);
    slot.object.reset();
    if (++slot.generation == 0) slot.generation = 1;
    free_.push_back(index);
    return object;
  }

  std::mutex mutex_;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
};

// Never destroyed: a thread may still call in while the process exits.
HandleTable<ClientEntry, 1>& clients() {
  static auto* table = new HandleTable<ClientEntry, 1>;
  return *table;
}
HandleTable<FdEntry, 2>& fds() {
  static auto* table = new HandleTable<FdEntry, 2>;
  return *table;
}

uintptr_t bits(const void* handle) {
  return reinterpret_cast<uintptr_t>(handle);
}

bool badArgs(bool bad) {
  if (bad) errno = EINVAL;
  return bad;
}

// The live client behind a handle, or null with errno set: EINVAL for NULL,
// EBADF for a handle that is not (or no longer) open, ENOTCONN for a client
// that is being disconnected.
std::shared_ptr<ClientEntry> clientOf(zcio_client_t* handle) {
  if (badArgs(handle == nullptr)) return nullptr;
  auto entry = clients().find(bits(handle));
  if (!entry) {
    errno = EBADF;
    return nullptr;
  }
  if (!entry->connected.load()) {
    errno = ENOTCONN;
    return nullptr;
  }
  return entry;
}

std::shared_ptr<FdEntry> fdOf(zcio_fd_t* handle) {
  if (badArgs(handle == nullptr)) return nullptr;
  auto entry = fds().find(bits(handle));
  if (!entry) {
    errno = EBADF;
    return nullptr;
  }
  if (!entry->owner->connected.load()) {
    errno = ENOTCONN;
    return nullptr;
  }
  return entry;
}

// Sets errno from a failed result. A call that zcio_disconnect ended says
// ENOTCONN rather than the transport's ESHUTDOWN.
template <typename T>
bool failed(const ClientEntry& owner, const zcio::Result<T>& r) {
  if (r.ok()) return false;
  errno = r.error().code;
  if (errno == ESHUTDOWN && !owner.connected.load()) errno = ENOTCONN;
  return true;
}

zcio_client_t* publish(zcio::Result<std::unique_ptr<zcio::fops::Client>> client) {
  if (!client) {
    errno = client.error().code;
    return nullptr;
  }
  std::shared_ptr<ClientEntry> entry(new (std::nothrow) ClientEntry(std::move(*client)));
  if (!entry) {
    errno = ENOMEM;
    return nullptr;
  }
  uintptr_t handle = clients().add(entry);
  if (handle == 0) {
    errno = EMFILE;
    return nullptr;
  }
  return reinterpret_cast<zcio_client_t*>(handle);
}

template <typename Fn>
ssize_t io(zcio_fd_t* handle, const struct iovec* iov, int iovcnt, off_t offset, Fn fn) {
  auto fd = fdOf(handle);
  if (!fd) return -1;
  if (badArgs(iovcnt < 0 || (iov == nullptr && iovcnt > 0) || offset < 0)) return -1;
  // The iovecs themselves (NULL bases, IOV_MAX, overflow) are checked by the
  // Client, for C++ callers too.
  std::span<const iovec> span(iov, static_cast<size_t>(iovcnt));
  auto r = fn(*fd->owner->client, fd->fh, span, static_cast<uint64_t>(offset));
  if (failed(*fd->owner, r)) return -1;
  return static_cast<ssize_t>(*r);
}

}  // namespace

extern "C" {

zcio_client_t* zcio_connect(const char* url) {
  if (badArgs(url == nullptr)) return nullptr;
  return publish(zcio::fops::Client::connect(url));
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
  return publish(zcio::fops::Client::connect(url, o));
}

int zcio_set_file_options(zcio_fd_t* handle, int io_cache, int write_behind) {
  auto fd = fdOf(handle);
  if (!fd) return -1;
  zcio::fops::FileOptions o{io_cache != 0, write_behind != 0};
  return failed(*fd->owner, fd->owner->client->setFileOptions(fd->fh, o)) ? -1 : 0;
}

int zcio_disconnect(zcio_client_t* handle) {
  if (badArgs(handle == nullptr)) return -1;
  auto entry = clients().take(bits(handle));
  if (!entry) {
    errno = EBADF;
    return -1;
  }
  entry->connected.store(false);
  // Its files' handles go with it; calls already in them finish first.
  auto files = fds().takeIf([&](const FdEntry& f) { return f.owner == entry; });
  files.clear();
  // Fails every pending call (ENOTCONN to their callers); the Client itself
  // is freed when the last call still holding it returns.
  entry->client->shutdown();
  return 0;
}

zcio_fd_t* zcio_open(zcio_client_t* handle, const char* path, int flags, mode_t mode) {
  auto client = clientOf(handle);
  if (!client) return nullptr;
  if (badArgs(path == nullptr)) return nullptr;
  auto fh = client->client->open(path, flags, mode);
  if (failed(*client, fh)) return nullptr;
  auto entry = std::shared_ptr<FdEntry>(new (std::nothrow) FdEntry{client, *fh});
  uintptr_t fd = entry ? fds().add(entry) : 0;
  if (fd == 0) {
    (void)client->client->close(*fh);
    errno = entry ? EMFILE : ENOMEM;
    return nullptr;
  }
  // A disconnect that ran meanwhile may have swept the table before this
  // handle was in it: take it back out rather than leave it behind.
  if (!client->connected.load()) {
    fds().take(fd);
    errno = ENOTCONN;
    return nullptr;
  }
  return reinterpret_cast<zcio_fd_t*>(fd);
}

int zcio_close(zcio_fd_t* handle) {
  if (badArgs(handle == nullptr)) return -1;
  // Taken out first: a second close (or a racing one) finds nothing.
  auto fd = fds().take(bits(handle));
  if (!fd) {
    errno = EBADF;
    return -1;
  }
  if (!fd->owner->connected.load()) {
    errno = ENOTCONN;
    return -1;
  }
  auto r = fd->owner->client->close(fd->fh);  // the handle is gone even on error, as with close(2)
  return failed(*fd->owner, r) ? -1 : 0;
}

int zcio_fsync(zcio_fd_t* handle) {
  auto fd = fdOf(handle);
  if (!fd) return -1;
  return failed(*fd->owner, fd->owner->client->fsync(fd->fh)) ? -1 : 0;
}

int zcio_stat(zcio_client_t* handle, const char* path, struct stat* st) {
  auto client = clientOf(handle);
  if (!client) return -1;
  if (badArgs(path == nullptr || st == nullptr)) return -1;
  auto r = client->client->stat(path);
  if (failed(*client, r)) return -1;
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

int zcio_get_stats(zcio_client_t* handle, struct zcio_stats* out) {
  auto client = clientOf(handle);
  if (!client) return -1;
  if (badArgs(out == nullptr)) return -1;
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

int zcio_register_memory(zcio_client_t* handle, void* addr, size_t length) {
  auto client = clientOf(handle);
  if (!client) return -1;
  if (badArgs(addr == nullptr || length == 0)) return -1;
  return failed(*client, client->client->registerMemory(addr, length)) ? -1 : 0;
}

int zcio_deregister_memory(zcio_client_t* handle, void* addr, size_t length) {
  auto client = clientOf(handle);
  if (!client) return -1;
  if (badArgs(addr == nullptr || length == 0)) return -1;
  return failed(*client, client->client->deregisterMemory(addr, length)) ? -1 : 0;
}

}  // extern "C"
