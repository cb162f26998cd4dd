// zcio::fops::IoCache: the client's optional read cache (the "io-cache").
//
// Page-granular (4 KiB), LRU, capped at a byte budget. Keyed by file (the
// inode number from the open reply, so two handles of one file share pages).
// Only whole 4 KiB pages that a regular read returned in full are cached; a
// read is a hit only when every page it covers is cached (the tail of a file
// past its last whole page always misses, so EOF is always the server's).
//
// Coherence rules (DESIGN.md, "The two read paths"):
//  - a direct read bypasses the cache and purges the pages it overlaps;
//  - any write (regular or direct) purges the pages it overlaps;
//  - a reply carrying attributes (open, stat, fstat) whose size or mtime
//    differs from the last one seen for that file drops all its pages.
// A fill races purges with a per-file generation: a read snapshots it when it
// is sent and its pages are dropped if a purge happened meanwhile.
//
// Thread-safe (one mutex); every method is short and never blocks on I/O, so
// it may run on the transport thread.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <list>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

namespace zcio::fops {

class IoCache {
 public:
  static constexpr uint64_t kPageSize = 4096;

  explicit IoCache(uint64_t capacity_bytes) : capacity_pages_(capacity_bytes / kPageSize) {}
  IoCache(const IoCache&) = delete;
  IoCache& operator=(const IoCache&) = delete;

  // If every page of [offset, offset + iovLength(iov)) is cached, copies the
  // bytes into `iov`, counts a hit and returns true; else counts a miss.
  bool lookup(uint64_t key, std::span<const iovec> iov, uint64_t offset);
  // The file's generation, to hand to fill() later.
  uint64_t generation(uint64_t key);
  // Caches the whole pages of the `length` bytes at `offset` that `iov`
  // holds (the result of a regular read), unless `generation` is stale.
  // Returns the bytes copied into the cache.
  uint64_t fill(uint64_t key, uint64_t generation, std::span<const iovec> iov, uint64_t offset,
                uint64_t length);
  // Drops the pages overlapping [offset, offset + length) and bumps the
  // file's generation (in-flight fills are then discarded).
  void purge(uint64_t key, uint64_t offset, uint64_t length);
  // A reply showed the file's size and mtime: if they changed since the last
  // reply, drops every page of the file.
  void observeAttr(uint64_t key, uint64_t size, int64_t mtime_ns);

  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }
  // Pages dropped by purges and attribute invalidations (not LRU evictions).
  uint64_t purges() const { return purges_.load(std::memory_order_relaxed); }
  uint64_t cachedPages() const;

 private:
  struct Page {
    uint64_t key;
    uint64_t index;
    std::vector<uint8_t> data;
  };
  using Lru = std::list<Page>;
  struct File {
    uint64_t generation = 0;
    bool attr_known = false;
    uint64_t size = 0;
    int64_t mtime_ns = 0;
    std::unordered_map<uint64_t, Lru::iterator> pages;
  };

  void dropLocked(File& file, uint64_t index);

  const uint64_t capacity_pages_;
  mutable std::mutex mutex_;
  Lru lru_;  // front = most recently used
  std::unordered_map<uint64_t, File> files_;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> purges_{0};
};

// Copies between an iov (skipping its first `skip` bytes) and flat memory.
void copyFromIov(std::span<const iovec> iov, uint64_t skip, uint8_t* dst, uint64_t length);
void copyToIov(std::span<const iovec> iov, uint64_t skip, const uint8_t* src, uint64_t length);

}  // namespace zcio::fops
