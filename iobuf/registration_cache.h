// RegistrationCache: reuses memory registrations for arbitrary user memory
// (DESIGN "Registration policy (RDMA)", invariants 2 and 3).
//
// Registering costs tens of microseconds (about as much as copying 100+ KiB),
// so the RDMA transport registers a user's iov through this cache:
//
//   auto ref = cache.acquire(iov.iov_base, iov.iov_len, kLocalWrite | kRemoteWrite);
//   if (!ref.ok()) return ref.error();
//   ... post with ref->keys().lkey / rkey; keep `ref` until the request ends ...
//
// Entries are page-granular: [addr, addr + length) is rounded out to page
// boundaries and that range is registered, so neighbouring buffers in the same
// pages hit (libfabric PR #12836: 21.3 us/op fell to 0.49 us/op). A hit is a
// live entry that covers the whole rounded range with a superset of the
// requested access bits. Invariant 3 (narrow rkeys) is the transport's job: it
// exposes a cached registration to the peer through a per-request memory
// window of the request's own access; the cache never widens an entry's bits.
//
// Lifetime of an entry: a miss registers the rounded range and inserts it.
// When cached bytes exceed Options::max_bytes or entries exceed max_entries,
// the least recently used unreferenced entries are evicted (deregistered);
// recency is tracked CLOCK-style (a hit sets a bit, no list surgery on the hot
// path). Referenced and pinned entries are never evicted. invalidate() makes every
// overlapping entry unusable for lookups at once; it is deregistered at once
// if unreferenced, else when its last RegistrationRef drops.
//
// pin()/unpin(): memory the caller registers for its whole life (as
// MPI_Alloc_mem / ucp_mem_map). A pinned entry is never evicted, and acquire()
// on any range inside it is a hit, so it never registers on the hot path. The
// caller unpins before freeing the memory; if the memory is watchable an unmap
// is still detected (the pin is dropped, counted as an invalidation).
//
// Soundness on unmap (invariant 2; UCX #2732/#5910, DAOS #4619): freeing or
// unmapping memory and mapping new memory at the same address must never
// return the old registration, whose pages are no longer the caller's.
//  - Every cached range is watched by an UnmapMonitor (userfaultfd; see
//    unmap_monitor.h) *before* it is registered, so any munmap, mremap,
//    madvise(DONTNEED/FREE/REMOVE) or brk shrink of it from then on produces an
//    event, and the kernel holds the unmapping thread until the monitor has
//    read that event.
//  - Each read of the userfaultfd is ticketed. Every cache operation
//    compares the monitor's ticket with the last one applied (one atomic load
//    on the hit path, which leaves its lockless path when they differ); if the
//    monitor has read more, it waits, under the mutex, for those events to be
//    queued and applies them (invalidate the overlapping entries) before
//    looking anything up. A consumer thread also
//    applies them promptly when nobody calls in. Hence: an acquire() that
//    starts after munmap()/madvise()/mremap() returned never hits an entry for
//    the old memory.
//  - A miss snapshots the invalidation sequence, watches the range, registers
//    it, and inserts it only if no invalidation overlapping the range was
//    applied meanwhile; otherwise the registration is used for this request
//    only. Pages are prefaulted (MADV_POPULATE_*) before the watch, so the
//    registrar's pinning does not fault through the monitor.
//  - Watches are removed only for pages no live cached entry or in-flight miss
//    still needs (coverage is recomputed on every eviction/invalidation).
//  - The monitor thread never takes this mutex and never allocates: a thread
//    holding the mutex may free() memory that the allocator (glibc trimming,
//    ASan's quarantine) munmaps over a watched range, and that thread then
//    waits for the monitor, which is always free to read.
//  - After madvise(MADV_DONTNEED), the range's entries are invalidated and its
//    pages unwatched, and any fault that still reaches the monitor (a race with
//    that unwatch) is answered with a zero page: nothing touching the memory
//    afterwards hangs.
// Residual window, stated plainly: UNMAP/REMAP events are queued only after
// the kernel has removed the old mapping. If thread A munmaps a cached range
// and, before A's munmap() returns, thread B mmaps new memory that lands at the
// same address and calls acquire() on it, B may still hit the old entry. An
// acquire ordered after the munmap() return (same thread, or synchronised with
// it) is always correct. Closing that window needs munmap interception
// (UCX's ucm hooks), which this library does not do. Also not detected:
// fallocate(PUNCH_HOLE)/ftruncate through a file descriptor of a shmem/memfd
// mapping whose pages are cached (no userfaultfd event exists for it).
//
// Memory that cannot be watched (file-backed private mappings, hugetlbfs,
// memory owned by another userfaultfd, ...): acquire() registers the rounded
// range for this request only; the registration is deregistered when the
// RegistrationRef drops (ref.cached() is false). Where userfaultfd is
// unavailable altogether (ENOSYS, EPERM under seccomp, Options::monitor_unmaps
// false), the cache does not cache at all: every acquire registers and every
// release deregisters, pin() still works; the reason is logged once
// (fallbackReason()).
//
// fork(): the cache does not set MADV_DONTFORK on cached ranges. Entries are
// page-rounded, so their pages also hold the caller's unrelated heap data, and
// a child that touches it would get SIGSEGV. Instead we rely on Linux >= 5.13
// (Debian 12 ships 6.1), which copies pages pinned for DMA into the child at
// fork time, so the parent keeps the pages its registrations point at
// (rdma-core reports IBV_FORK_UNNEEDED there; on older kernels the verbs
// registrar must call ibv_fork_init() before registering). The userfaultfd is
// negotiated without EVENT_FORK, so the child's memory is not watched; in a
// child the cache stops returning cached entries (every acquire registers
// afresh) and its destructor leaks rather than deregistering the parent's
// registrations.
//
// Side effects of watching: a watched sub-range splits the caller's VMA, so
// (a) mremap() of a range that spans such a split fails with EFAULT (mremap
// moves a single VMA; glibc's realloc then falls back to malloc+copy+free),
// and (b) every cached entry may cost up to two VMAs against
// vm.max_map_count (65530 by default) until it is evicted or invalidated.
//
// One cache per process (or per protection domain) is the intended use: a
// page can be watched by one userfaultfd only, so memory already cached by
// another RegistrationCache gets EBUSY here and is registered per request
// (correct, just not cached). Sharing one monitor between caches would lift
// this.
//
// Thread-safety: every member function is thread-safe (one mutex; the
// registrar is called outside it and must itself be thread-safe). A hit takes
// no mutex: it probes the exact-begin index and takes its reference with one
// compare-and-swap on the entry's state word, which also says whether the
// entry is still findable; the release of a reference is one more such CAS
// unless the entry needs the mutex (it left the cache meanwhile, or eviction
// took it off the LRU list while it was referenced). A hit falls back to the
// mutex whenever the monitor has read events nobody has applied yet, so the
// unmap rule above holds unchanged. Entries are recycled, never freed, while
// the cache lives (a lockless reader may still hold a stale pointer from the
// index: it finds the entry unfindable or for another range and retries under
// the mutex), and old index tables are kept for the same reason. The cost: two
// atomic read-modify-writes per hit and release instead of four (a lock and
// an unlock each); see bench/registration_cache_benchmark.cc. A
// RegistrationRef is used by one thread at a time. Lifetime: the registrar and
// the cache must outlive every RegistrationRef; the destructor deregisters
// every entry.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/result.h"
#include "iobuf/iobuf.h"
#include "iobuf/memory_registrar.h"
#include "iobuf/unmap_monitor.h"

namespace zcio::iobuf {

class RegistrationCache;
namespace detail {
struct CacheEntry;
}

// One reference to a registration covering the caller's range; releases it
// on destruction. Move-only. keys() are valid for [address(), address() +
// length()), which contains the caller's range.
class RegistrationRef {
 public:
  RegistrationRef() = default;
  ~RegistrationRef() { reset(); }
  RegistrationRef(RegistrationRef&& other) noexcept { *this = std::move(other); }
  RegistrationRef& operator=(RegistrationRef&& other) noexcept;
  RegistrationRef(const RegistrationRef&) = delete;
  RegistrationRef& operator=(const RegistrationRef&) = delete;

  // Drops the reference now (deregistering if it was the last one of an
  // uncached or invalidated entry).
  void reset();
  explicit operator bool() const { return entry_ != nullptr; }

  const RegistrationKeys& keys() const { return keys_; }
  void* address() const { return reinterpret_cast<void*>(begin_); }  // page aligned
  size_t length() const { return length_; }                          // whole pages
  uint32_t access() const { return access_; }
  // False for a registration made for this request only (see header comment).
  bool cached() const { return cached_; }
  // True when acquire() found an existing entry (nothing was registered).
  bool hit() const { return hit_; }

 private:
  friend class RegistrationCache;
  RegistrationCache* cache_ = nullptr;
  detail::CacheEntry* entry_ = nullptr;
  RegistrationKeys keys_;
  uintptr_t begin_ = 0;
  size_t length_ = 0;
  uint32_t access_ = 0;
  bool cached_ = false;
  bool hit_ = false;
};

class RegistrationCache {
 public:
  struct Options {
    // Caps on cached, unpinned entries (referenced ones count but are never
    // evicted; pinned memory is the caller's choice and does not count).
    size_t max_bytes = size_t{1} << 30;
    size_t max_entries = 16384;
    // false: no userfaultfd monitor, so nothing but pinned memory is cached.
    bool monitor_unmaps = true;
    size_t event_queue_capacity = 4096;
    // Tests only: runs on a lockless hit between reading the index slot and
    // taking the reference, to stage races deterministically.
    std::function<void()> after_lockless_probe;
  };

  struct Stats {
    // Counted without a locked instruction: may miss a few under concurrent hits.
    uint64_t hits = 0;
    uint64_t misses = 0;
    uint64_t evictions = 0;
    uint64_t invalidations = 0;     // entries made unusable by invalidate() or a memory event
    uint64_t uncached = 0;          // registrations made for one request only
    uint64_t registered_bytes = 0;  // currently registered through this cache (all kinds)
    uint64_t cached_bytes = 0;      // bytes of entries findable by lookups
    uint64_t entries = 0;           // entries findable by lookups (pinned included)
    uint64_t pinned_entries = 0;
    uint64_t in_use = 0;  // live RegistrationRefs (summed over entries when stats() is called)
    UnmapMonitor::Counters monitor;
  };

  // Starts the unmap monitor (and a consumer thread) unless disabled; if
  // userfaultfd is unavailable, logs a warning once and falls back to not
  // caching. The registrar must outlive the cache.
  RegistrationCache(MemoryRegistrar& registrar, Options options);
  explicit RegistrationCache(MemoryRegistrar& registrar)
      : RegistrationCache(registrar, Options{}) {}
  ~RegistrationCache();
  RegistrationCache(const RegistrationCache&) = delete;
  RegistrationCache& operator=(const RegistrationCache&) = delete;

  // A registration covering [addr, addr + length) with at least `access`.
  // EINVAL for an empty, null or wrapping range; otherwise the registrar's error.
  Result<RegistrationRef> acquire(const void* addr, size_t length, uint32_t access);

  // Registers (or promotes an exactly matching cached entry) for the caller's
  // lifetime of the memory; pinning the same range again adds a pin count.
  // Returns the keys, valid for the page-rounded range.
  Result<RegistrationKeys> pin(const void* addr, size_t length, uint32_t access);
  // Drops one pin of the entry for exactly this (page-rounded) range; at zero
  // the entry leaves the cache and is deregistered once unreferenced.
  // ENOENT if no such pin (never pinned, or dropped by an unmap).
  Result<void> unpin(const void* addr, size_t length);

  // Every entry overlapping the page-rounded range becomes unusable for
  // lookups now (pins included).
  void invalidate(const void* addr, size_t length);

  Stats stats() const;
  // False when running without an unmap monitor (fallback: nothing but pinned
  // memory is cached); fallbackReason() then says why.
  bool caching() const { return monitor_ != nullptr; }
  const std::string& fallbackReason() const { return fallback_reason_; }

 private:
  friend class RegistrationRef;
  using Entry = detail::CacheEntry;
  using EntryMap = std::multimap<uintptr_t, Entry*>;
  enum class Purpose { kAcquire, kPin };
  struct Pending {
    uintptr_t begin;
    uintptr_t end;
  };
  struct Invalidated {
    uint64_t seq;
    uintptr_t begin;
    uintptr_t end;
  };
  static constexpr size_t kInvalidationHistory = 64;
  static constexpr int kMaxLookupSteps = 16;
  static constexpr int kMaxLocklessProbes = 8;

  Result<void> roundRange(const void* addr, size_t length, uintptr_t* begin, uintptr_t* end) const;
  bool forkedChild() const;
  Result<RegistrationRef> registerNew(uintptr_t begin, uintptr_t end, uint32_t access,
                                      Purpose purpose, RegistrationKeys* pinned_keys);
  void release(Entry* entry);
  // The hit path without the mutex; null means "take the locked path".
  Entry* tryLocklessHit(uintptr_t begin, uintptr_t end, uint32_t access);
  static RegistrationRef refTo(RegistrationCache* cache, Entry* entry);
  Entry* newEntryLocked(uintptr_t begin, uintptr_t end, uint32_t access,
                        const RegistrationKeys& keys);
  void countHit();
  void prefault(uintptr_t begin, uintptr_t end, uint32_t access) const;
  void consumerLoop();

  // All *Locked functions need mutex_. Entries that reach refs == 0 while not
  // findable are appended to `dead`; the caller deregisters them after
  // unlocking (destroyDead).
  void syncLocked(std::vector<Entry*>& dead);
  void applyEventLocked(const AddressSpaceEvent& event, std::vector<Entry*>& dead);
  Entry* findCoveringLocked(uintptr_t begin, uintptr_t end, uint32_t access) const;
  void eraseFromMapLocked(Entry* entry);
  std::vector<Entry*> overlappingLocked(uintptr_t begin, uintptr_t end) const;
  void insertLocked(Entry* entry);
  void retireLocked(Entry* entry, std::vector<Entry*>& dead);
  void invalidateLocked(uintptr_t begin, uintptr_t end, std::vector<Entry*>& dead);
  void unwatchRangesLocked(std::vector<Pending> ranges);
  void unwatchUncoveredLocked(uintptr_t begin, uintptr_t end);
  void enforceLimitsLocked(std::vector<Entry*>& dead);
  void recordInvalidationLocked(uintptr_t begin, uintptr_t end);
  bool invalidatedSinceLocked(uint64_t seq, uintptr_t begin, uintptr_t end) const;
  void removePendingLocked(uintptr_t begin, uintptr_t end);
  RegistrationRef makeRefLocked(Entry* entry);
  void lruUnlinkLocked(Entry* entry);
  void lruPushLocked(Entry* entry);
  bool overLimitsLocked() const;
  // Exact-begin index over findable entries: most hits are a request whose
  // rounded range starts where an earlier request's did (same buffer, or a
  // neighbour in the same page), and one probe beats a 10,000-node tree walk.
  Entry* indexFindLocked(uintptr_t begin) const;
  void indexInsertLocked(Entry* entry);
  void indexEraseLocked(Entry* entry);
  size_t indexHome(uintptr_t begin, size_t mask) const;
  void markDeadLocked(Entry* entry, std::vector<Entry*>& dead);
  void destroyDead(std::vector<Entry*>& dead);

  MemoryRegistrar& registrar_;
  const Options options_;
  const uintptr_t page_size_;
  const uint64_t fork_generation_;
  bool prefault_supported_ = false;
  std::string fallback_reason_;

  mutable std::mutex mutex_;
  // Findable entries by begin. Pinned ones have their own map so that a hit
  // on a large pinned region never depends on the bounded walk of map_.
  EntryMap map_;
  EntryMap pinned_map_;
  size_t max_length_ = 0;         // longest entry ever in map_ while non-empty
  size_t pinned_max_length_ = 0;  // same for pinned_map_
  size_t unpinned_bytes_ = 0;     // what Options::max_bytes caps
  // Unpinned entries in insertion/second-chance order (CLOCK: a hit only sets
  // Entry::used; eviction moves used entries to the tail once and drops
  // referenced ones from the list until their release).
  Entry* lru_head_ = nullptr;
  Entry* lru_tail_ = nullptr;
  size_t lru_size_ = 0;
  // Written under the mutex, read by lockless hits too (hence atomics; every
  // pointer a reader may find in a slot stays a valid Entry while the cache
  // lives). Open addressing, linear probing, power-of-two size.
  struct IndexSlot {
    std::atomic<uintptr_t> begin{0};  // 0: empty
    std::atomic<Entry*> entry{nullptr};
  };
  struct IndexTable {
    explicit IndexTable(size_t size) : mask(size - 1), slots(new IndexSlot[size]) {}
    const size_t mask;
    std::unique_ptr<IndexSlot[]> slots;
  };
  std::atomic<IndexTable*> index_{nullptr};
  std::vector<std::unique_ptr<IndexTable>> index_tables_;  // every table used: readers may lag
  size_t index_count_ = 0;
  std::vector<std::unique_ptr<Entry>> all_entries_;  // the pool: entries live as long as the cache
  std::vector<Entry*> free_entries_;
  unsigned page_shift_ = 12;
  std::vector<Pending> pending_;  // watched ranges whose registration is in flight
  Invalidated history_[kInvalidationHistory] = {};
  uint64_t invalidation_seq_ = 0;
  std::atomic<uint64_t> consumed_ticket_{0};  // read by lockless hits
  std::atomic<uint64_t> hits_{0};
  Stats stats_;  // hits and in_use are not kept here (see stats())

  std::unique_ptr<UnmapMonitor> monitor_;  // null: fallback (not caching)
  std::atomic<bool> stopping_{false};
  std::unique_ptr<std::thread> consumer_;
};

}  // namespace zcio::iobuf
