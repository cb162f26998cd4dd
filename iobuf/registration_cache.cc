#include "iobuf/registration_cache.h"

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <optional>

#include "base/log.h"

namespace zcio::iobuf {
namespace detail {

// The state word: references in the low half, and the two conditions under
// which dropping the last reference needs the mutex.
constexpr uint64_t kRefMask = 0xffffffffu;
constexpr uint64_t kUnfindable = uint64_t{1} << 32;  // !findable: the last release retires it
constexpr uint64_t kOffLru = uint64_t{1} << 33;  // eviction unlinked it: the last release relinks
constexpr uint64_t kNeedsLock = kUnfindable | kOffLru;

// What a hit reads (begin..state) shares one cache line.
struct alignas(64) CacheEntry {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  uint32_t access = 0;
  RegistrationKeys keys;
  // Changed with atomic read-modify-writes only (lockless hits and releases
  // race with the mutex holder), so that exactly one party sees the last
  // reference drop from an entry that needs the mutex.
  std::atomic<uint64_t> state{kUnfindable};
  std::atomic<bool> used{false};  // hit since it last went to the LRU tail
  uint32_t pins = 0;
  bool findable = false;  // in map_ or pinned_map_ (mirrored by !kUnfindable)
  bool in_pinned_map = false;
  bool watched = false;  // its pages are registered with the monitor
  bool in_lru = false;
  CacheEntry* lru_prev = nullptr;
  CacheEntry* lru_next = nullptr;
  std::multimap<uintptr_t, CacheEntry*>::iterator position;

  size_t length() const { return end - begin; }
  uint32_t refs() const {
    return static_cast<uint32_t>(state.load(std::memory_order_acquire) & kRefMask);
  }
  // The CLOCK bit; read first so that a hot entry's line is not written again.
  void markUsed() {
    if (!used.load(std::memory_order_relaxed)) used.store(true, std::memory_order_relaxed);
  }
};

}  // namespace detail

using detail::kNeedsLock;
using detail::kOffLru;
using detail::kRefMask;
using detail::kUnfindable;

namespace {

// Bumped in every forked child: a child's memory is not watched (no
// UFFD_FEATURE_EVENT_FORK) and its registrations are the parent's.
std::atomic<uint64_t> g_fork_generation{0};

uint64_t forkGeneration() {
  static std::once_flag once;
  std::call_once(once, [] {
    ::pthread_atfork(nullptr, nullptr,
                     [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
  });
  return g_fork_generation.load(std::memory_order_relaxed);
}

bool prefaultSupported(size_t page_size) {
  void* probe =
      ::mmap(nullptr, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (probe == MAP_FAILED) return false;
  bool ok = ::madvise(probe, page_size, MADV_POPULATE_READ) == 0;  // Linux >= 5.14
  ::munmap(probe, page_size);
  return ok;
}

}  // namespace

// ---------------------------------------------------------------------------
// RegistrationRef

RegistrationRef& RegistrationRef::operator=(RegistrationRef&& other) noexcept {
  if (this != &other) {
    reset();
    cache_ = std::exchange(other.cache_, nullptr);
    entry_ = std::exchange(other.entry_, nullptr);
    keys_ = other.keys_;
    begin_ = other.begin_;
    length_ = other.length_;
    access_ = other.access_;
    cached_ = other.cached_;
    hit_ = other.hit_;
  }
  return *this;
}

void RegistrationRef::reset() {
  if (entry_ != nullptr) {
    cache_->release(entry_);
    entry_ = nullptr;
    cache_ = nullptr;
  }
}

// ---------------------------------------------------------------------------
// RegistrationCache: construction

RegistrationCache::RegistrationCache(MemoryRegistrar& registrar, Options options)
    : registrar_(registrar),
      options_(std::move(options)),
      page_size_(static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE))),
      fork_generation_(forkGeneration()) {
  page_shift_ = static_cast<unsigned>(__builtin_ctzl(page_size_));
  index_tables_.push_back(std::make_unique<IndexTable>(1024));
  index_.store(index_tables_.back().get(), std::memory_order_release);
  prefault_supported_ = prefaultSupported(page_size_);
  if (!options_.monitor_unmaps) {
    fallback_reason_ = "unmap monitor disabled by Options::monitor_unmaps";
    ZCIO_LOG(kDebug, "registration cache: not caching user memory: ", fallback_reason_);
    return;
  }
  auto monitor = UnmapMonitor::create(options_.event_queue_capacity);
  if (!monitor.ok()) {
    fallback_reason_ = monitor.error().toString();
    static std::atomic<bool> warned{false};
    if (!warned.exchange(true)) {
      ZCIO_LOG(kWarn, "registration cache: not caching user memory (every transfer registers and ",
               "deregisters): cannot watch for munmap: ", fallback_reason_);
    }
    return;
  }
  monitor_ = std::move(*monitor);
  ZCIO_LOG(kDebug, "registration cache: unmap monitor via ", monitor_->openedVia());
  consumer_ = std::make_unique<std::thread>([this] { consumerLoop(); });
}

RegistrationCache::~RegistrationCache() {
  if (forkedChild()) {
    // The threads are the parent's and so are the registrations: leak them.
    (void)consumer_.release();
    return;
  }
  if (consumer_) {
    stopping_.store(true);
    monitor_->wakeConsumer();
    consumer_->join();
  }
  // Closing the userfaultfd drops every watch; nothing can change under us now.
  monitor_.reset();
  std::vector<Entry*> dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    uint64_t in_use = 0;
    for (const auto& entry : all_entries_) in_use += entry->refs();
    if (in_use != 0) {
      ZCIO_LOG(kError, "registration cache destroyed with ", in_use,
               " registrations still referenced; leaking them");
    }
    for (EntryMap* map : {&map_, &pinned_map_}) {
      for (auto& [begin, entry] : *map) {
        if (entry->refs() == 0) dead.push_back(entry);
      }
      map->clear();
    }
  }
  destroyDead(dead);
  // Entries still referenced are leaked with their registrations (logged above).
  for (auto& entry : all_entries_) {
    if (entry->refs() != 0) (void)entry.release();
  }
}

bool RegistrationCache::forkedChild() const {
  return g_fork_generation.load(std::memory_order_relaxed) != fork_generation_;
}

Result<void> RegistrationCache::roundRange(const void* addr, size_t length, uintptr_t* begin,
                                           uintptr_t* end) const {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  if (a == 0 || length == 0) return makeError(EINVAL, "registration cache: empty or null range");
  if (a + length < a || a + length > UINTPTR_MAX - page_size_) {
    return makeError(EINVAL, "registration cache: range wraps the address space");
  }
  *begin = a & ~(page_size_ - 1);
  *end = (a + length + page_size_ - 1) & ~(page_size_ - 1);
  return okResult();
}

// ---------------------------------------------------------------------------
// Public operations

Result<RegistrationRef> RegistrationCache::acquire(const void* addr, size_t length,
                                                   uint32_t access) {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  ZCIO_RETURN_IF_ERROR(roundRange(addr, length, &begin, &end));
  if (Entry* hit = tryLocklessHit(begin, end, access)) {
    RegistrationRef ref = refTo(this, hit);
    ref.hit_ = true;
    return ref;
  }
  std::vector<Entry*> dead;
  RegistrationRef ref;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);  // apply every unmap the monitor has read: see header
    Entry* hit = forkedChild() ? nullptr : findCoveringLocked(begin, end, access);
    if (hit != nullptr) {
      countHit();
      hit->markUsed();
      ref = makeRefLocked(hit);
      ref.hit_ = true;
    } else {
      ++stats_.misses;
    }
  }
  if (!dead.empty()) destroyDead(dead);
  if (ref) return ref;
  return registerNew(begin, end, access, Purpose::kAcquire, nullptr);
}

Result<RegistrationKeys> RegistrationCache::pin(const void* addr, size_t length, uint32_t access) {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  ZCIO_RETURN_IF_ERROR(roundRange(addr, length, &begin, &end));
  std::vector<Entry*> dead;
  std::optional<RegistrationKeys> found;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);
    auto [pb, pe] = pinned_map_.equal_range(begin);
    for (auto it = pb; it != pe && !found; ++it) {
      Entry* entry = it->second;
      if (entry->end == end && (entry->access & access) == access) {
        ++entry->pins;
        found = entry->keys;
      }
    }
    auto [cb, ce] = map_.equal_range(begin);
    for (auto it = cb; it != ce && !found; ++it) {
      Entry* entry = it->second;
      if (entry->end == end && (entry->access & access) == access) {
        // Promote the cached registration instead of registering again.
        eraseFromMapLocked(entry);
        entry->pins = 1;
        insertLocked(entry);
        found = entry->keys;
      }
    }
  }
  if (!dead.empty()) destroyDead(dead);
  if (found) return *found;
  RegistrationKeys keys;
  auto registered = registerNew(begin, end, access, Purpose::kPin, &keys);
  if (!registered.ok()) return registered.error();
  return keys;
}

Result<void> RegistrationCache::unpin(const void* addr, size_t length) {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  ZCIO_RETURN_IF_ERROR(roundRange(addr, length, &begin, &end));
  std::vector<Entry*> dead;
  bool found = false;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);
    auto [pb, pe] = pinned_map_.equal_range(begin);
    for (auto it = pb; it != pe; ++it) {
      Entry* entry = it->second;
      if (entry->end != end) continue;
      found = true;
      if (--entry->pins == 0) {
        const bool watched = entry->watched;
        retireLocked(entry, dead);
        if (watched) unwatchUncoveredLocked(begin, end);
      }
      break;
    }
  }
  if (!dead.empty()) destroyDead(dead);
  if (!found) return makeError(ENOENT, "unpin: range is not pinned (or was unmapped)");
  return okResult();
}

void RegistrationCache::invalidate(const void* addr, size_t length) {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  if (!roundRange(addr, length, &begin, &end).ok()) return;
  std::vector<Entry*> dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);
    invalidateLocked(begin, end, dead);
  }
  destroyDead(dead);
}

RegistrationCache::Stats RegistrationCache::stats() const {
  Stats copy;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    copy = stats_;
    for (const auto& entry : all_entries_) copy.in_use += entry->refs();
  }
  copy.hits = hits_.load(std::memory_order_relaxed);
  if (monitor_) copy.monitor = monitor_->counters();
  return copy;
}

// ---------------------------------------------------------------------------
// Miss path

void RegistrationCache::prefault(uintptr_t begin, uintptr_t end, uint32_t access) const {
  if (!prefault_supported_) return;
  // What the registrar's pinning would fault in anyway, done before the watch
  // so that it does not go through the monitor one page at a time. Failure
  // (unmapped, PROT_NONE, VM_IO) is the registrar's to report.
  const int advice =
      (access & (kLocalWrite | kRemoteWrite)) != 0 ? MADV_POPULATE_WRITE : MADV_POPULATE_READ;
  (void)::madvise(reinterpret_cast<void*>(begin), end - begin, advice);
}

Result<RegistrationRef> RegistrationCache::registerNew(uintptr_t begin, uintptr_t end,
                                                       uint32_t access, Purpose purpose,
                                                       RegistrationKeys* pinned_keys) {
  const size_t length = end - begin;
  bool try_watch = monitor_ != nullptr && !forkedChild();
  for (int attempt = 0;; ++attempt) {
    std::vector<Entry*> dead;
    bool watched = false;
    uint64_t seq = 0;
    if (try_watch) {
      prefault(begin, end, access);
      std::lock_guard<std::mutex> lock(mutex_);
      syncLocked(dead);
      // Watch *before* registering: an unmap from here on is an event, and
      // `seq` tells us below whether one hit this range.
      seq = invalidation_seq_;
      auto watch = monitor_->watch(begin, length);
      if (watch.ok()) {
        watched = true;
        pending_.push_back({begin, end});
      } else {
        if (watch.error().code == EOPNOTSUPP) unwatchUncoveredLocked(begin, end);
        ZCIO_LOG(kDebug,
                 "registration cache: range not watchable, registering it for one request: ",
                 watch.error().toString());
      }
    }
    if (!dead.empty()) destroyDead(dead);

    auto keys = registrar_.registerRange(reinterpret_cast<void*>(begin), length, access);
    if (!keys.ok()) {
      if (watched) {
        std::lock_guard<std::mutex> lock(mutex_);
        removePendingLocked(begin, end);
        unwatchUncoveredLocked(begin, end);
      }
      // A user-mode-only userfaultfd turns a kernel fault on a page zapped
      // between prefault and watch into EFAULT: retry without the watch.
      if (watched && monitor_->userModeOnly() && keys.error().code == EFAULT && attempt == 0) {
        try_watch = false;
        continue;
      }
      return keys.error();
    }

    RegistrationRef ref;
    bool stale = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      syncLocked(dead);
      Entry* entry = newEntryLocked(begin, end, access, *keys);
      stats_.registered_bytes += length;
      if (watched) removePendingLocked(begin, end);
      stale = watched && invalidatedSinceLocked(seq, begin, end);
      if (stale) {
        unwatchUncoveredLocked(begin, end);
        watched = false;
      }
      if (purpose == Purpose::kPin) {
        // Pins are cached even when unwatchable (the caller promised to unpin
        // before unmapping), but never from a registration that raced an unmap.
        if (stale) {
          markDeadLocked(entry, dead);
        } else {
          entry->watched = watched;
          entry->pins = 1;
          insertLocked(entry);
          *pinned_keys = entry->keys;
        }
      } else if (watched) {
        Entry* existing = findCoveringLocked(begin, end, access);
        if (existing != nullptr) {
          // Another thread cached the same range meanwhile: share it.
          ref = makeRefLocked(existing);
          markDeadLocked(entry, dead);
          unwatchUncoveredLocked(begin, end);
        } else {
          entry->watched = true;
          insertLocked(entry);
          ref = makeRefLocked(entry);
          enforceLimitsLocked(dead);
        }
      } else {
        // For this request only: deregistered when `ref` drops.
        ++stats_.uncached;
        ref = makeRefLocked(entry);
      }
    }
    if (!dead.empty()) destroyDead(dead);
    if (purpose == Purpose::kPin && stale) {
      if (attempt < 3) continue;
      return makeError(EAGAIN, "pin: memory was unmapped while it was being registered");
    }
    return ref;
  }
}

// ---------------------------------------------------------------------------
// References

RegistrationRef RegistrationCache::refTo(RegistrationCache* cache, Entry* entry) {
  RegistrationRef ref;
  ref.cache_ = cache;
  ref.entry_ = entry;
  ref.keys_ = entry->keys;
  ref.begin_ = entry->begin;
  ref.length_ = entry->length();
  ref.access_ = entry->access;
  ref.cached_ = (entry->state.load(std::memory_order_relaxed) & kUnfindable) == 0;
  return ref;
}

RegistrationRef RegistrationCache::makeRefLocked(Entry* entry) {
  // Stays on the LRU list: eviction skips (and unlinks) referenced entries.
  entry->state.fetch_add(1, std::memory_order_acquire);
  return refTo(this, entry);
}

void RegistrationCache::countHit() {
  // A plain increment of an atomic: no locked instruction on the hit path, at
  // the price of an occasional lost count when threads hit at the same time.
  hits_.store(hits_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

RegistrationCache::Entry* RegistrationCache::tryLocklessHit(uintptr_t begin, uintptr_t end,
                                                            uint32_t access) {
  if (!monitor_ || forkedChild()) return nullptr;
  // The monitor has read unmaps that nobody has applied: the locked path must
  // apply them before anything is looked up (the rule in the header).
  if (monitor_->readsStarted() != consumed_ticket_.load(std::memory_order_acquire)) return nullptr;
  const IndexTable* table = index_.load(std::memory_order_acquire);
  size_t i = indexHome(begin, table->mask);
  for (int probe = 0; probe < kMaxLocklessProbes; ++probe, i = (i + 1) & table->mask) {
    const IndexSlot& slot = table->slots[i];
    const uintptr_t slot_begin = slot.begin.load(std::memory_order_relaxed);
    if (slot_begin == 0) return nullptr;
    if (slot_begin != begin) continue;
    Entry* entry = slot.entry.load(std::memory_order_acquire);
    if (entry == nullptr) return nullptr;
    if (options_.after_lockless_probe) options_.after_lockless_probe();
    uint64_t state = entry->state.load(std::memory_order_relaxed);
    do {
      if ((state & kUnfindable) != 0 || (state & kRefMask) == kRefMask) return nullptr;
    } while (!entry->state.compare_exchange_weak(state, state + 1, std::memory_order_acquire,
                                                 std::memory_order_relaxed));
    // Referenced and findable when taken, so this incarnation of the entry
    // cannot be recycled under us: its fields are stable and ours to check
    // (the slot may have been stale or torn by a concurrent writer).
    if (entry->begin == begin && entry->end >= end && (entry->access & access) == access) {
      countHit();
      entry->markUsed();
      return entry;
    }
    release(entry);
    return nullptr;
  }
  return nullptr;
}

void RegistrationCache::release(Entry* entry) {
  // Not the last reference, or the last one of an entry that stays cached and
  // linked: one CAS, no mutex. The entry must not be touched after it.
  uint64_t state = entry->state.load(std::memory_order_relaxed);
  while ((state & kRefMask) != 1 || (state & kNeedsLock) == 0) {
    if (entry->state.compare_exchange_weak(state, state - 1, std::memory_order_acq_rel,
                                           std::memory_order_relaxed)) {
      return;
    }
  }
  std::vector<Entry*> dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);  // may retire `entry`; then the decrement below finishes it
    const uint64_t before = entry->state.fetch_sub(1, std::memory_order_acq_rel);
    if ((before & kRefMask) == 1) {
      if (!entry->findable) {
        markDeadLocked(entry, dead);
      } else if (entry->pins == 0 && !entry->in_lru) {
        entry->state.fetch_and(~kOffLru, std::memory_order_relaxed);
        lruPushLocked(entry);
        if (overLimitsLocked()) enforceLimitsLocked(dead);
      }
    }
  }
  if (!dead.empty()) destroyDead(dead);
}

void RegistrationCache::markDeadLocked(Entry* entry, std::vector<Entry*>& dead) {
  stats_.registered_bytes -= entry->length();
  dead.push_back(entry);
}

// Dead entries go back to the pool: a lockless hit may still be reading one
// through a stale index slot (its CAS then fails on kUnfindable).
void RegistrationCache::destroyDead(std::vector<Entry*>& dead) {
  for (Entry* entry : dead) {
    auto done = registrar_.deregister(entry->keys);
    if (!done.ok()) {
      ZCIO_LOG(kWarn, "registration cache: deregister [", reinterpret_cast<void*>(entry->begin),
               ", +", entry->length(), ") failed: ", done.error().toString());
    }
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    free_entries_.insert(free_entries_.end(), dead.begin(), dead.end());
  }
  dead.clear();
}

RegistrationCache::Entry* RegistrationCache::newEntryLocked(uintptr_t begin, uintptr_t end,
                                                            uint32_t access,
                                                            const RegistrationKeys& keys) {
  Entry* entry = nullptr;
  if (free_entries_.empty()) {
    all_entries_.push_back(std::make_unique<Entry>());
    entry = all_entries_.back().get();
  } else {
    entry = free_entries_.back();
    free_entries_.pop_back();
    // Unfindable with no references since it died: a lockless CAS fails on
    // it, so these plain writes race with no reader of the fields.
    entry->pins = 0;
    entry->in_pinned_map = entry->watched = entry->in_lru = false;
    entry->lru_prev = entry->lru_next = nullptr;
    entry->used.store(false, std::memory_order_relaxed);
  }
  entry->begin = begin;
  entry->end = end;
  entry->access = access;
  entry->keys = keys;
  return entry;
}

// ---------------------------------------------------------------------------
// Memory events

void RegistrationCache::syncLocked(std::vector<Entry*>& dead) {
  if (!monitor_) return;
  const uint64_t started = monitor_->readsStarted();
  // The hit path: nothing read since last time.
  if (started == consumed_ticket_.load(std::memory_order_relaxed)) return;
  monitor_->waitPublished(started);
  monitor_->consume([&](const AddressSpaceEvent& event) { applyEventLocked(event, dead); });
  consumed_ticket_.store(started, std::memory_order_release);  // lockless hits may go on
}

void RegistrationCache::applyEventLocked(const AddressSpaceEvent& event,
                                         std::vector<Entry*>& dead) {
  switch (event.kind) {
    case AddressSpaceEvent::Kind::kUnmap:
    case AddressSpaceEvent::Kind::kRemove:
      invalidateLocked(event.begin, event.end, dead);
      return;
    case AddressSpaceEvent::Kind::kRemap:
      invalidateLocked(event.begin, event.end, dead);
      // The moved mapping keeps our watch but none of our entries.
      unwatchUncoveredLocked(event.remap_to, event.remap_to + (event.end - event.begin));
      return;
    case AddressSpaceEvent::Kind::kOverflow: {
      // Events were lost: drop everything we cannot vouch for. Pins stay (their
      // owner promised to unpin before unmapping).
      ZCIO_LOG(kWarn, "registration cache: memory event queue overflowed; flushing the cache");
      recordInvalidationLocked(0, UINTPTR_MAX);
      std::vector<Entry*> victims;
      for (auto& [begin, entry] : map_) victims.push_back(entry);
      std::vector<Pending> unwatch;
      for (Entry* entry : victims) {
        if (entry->watched) unwatch.push_back({entry->begin, entry->end});
        retireLocked(entry, dead);
        ++stats_.invalidations;
      }
      unwatchRangesLocked(std::move(unwatch));
      return;
    }
  }
}

void RegistrationCache::invalidateLocked(uintptr_t begin, uintptr_t end,
                                         std::vector<Entry*>& dead) {
  recordInvalidationLocked(begin, end);
  std::vector<Pending> unwatch;
  for (Entry* entry : overlappingLocked(begin, end)) {
    if (entry->watched) unwatch.push_back({entry->begin, entry->end});
    retireLocked(entry, dead);
    ++stats_.invalidations;
  }
  unwatchRangesLocked(std::move(unwatch));
}

void RegistrationCache::recordInvalidationLocked(uintptr_t begin, uintptr_t end) {
  ++invalidation_seq_;
  history_[invalidation_seq_ % kInvalidationHistory] = {invalidation_seq_, begin, end};
}

bool RegistrationCache::invalidatedSinceLocked(uint64_t seq, uintptr_t begin, uintptr_t end) const {
  if (invalidation_seq_ - seq >= kInvalidationHistory) return true;  // history overwritten
  for (uint64_t s = seq + 1; s <= invalidation_seq_; ++s) {
    const Invalidated& record = history_[s % kInvalidationHistory];
    if (record.begin < end && record.end > begin) return true;
  }
  return false;
}

void RegistrationCache::removePendingLocked(uintptr_t begin, uintptr_t end) {
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->begin == begin && it->end == end) {
      pending_.erase(it);
      return;
    }
  }
}

void RegistrationCache::unwatchRangesLocked(std::vector<Pending> ranges) {
  if (ranges.empty()) return;
  std::sort(ranges.begin(), ranges.end(),
            [](const Pending& a, const Pending& b) { return a.begin < b.begin; });
  Pending current = ranges.front();
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].begin <= current.end) {
      current.end = std::max(current.end, ranges[i].end);
    } else {
      unwatchUncoveredLocked(current.begin, current.end);
      current = ranges[i];
    }
  }
  unwatchUncoveredLocked(current.begin, current.end);
}

// Unregisters the pages of [begin, end) that no findable watched entry and no
// in-flight miss relies on. Must run under the mutex so that no other thread
// watches part of the range between the coverage check and the unregister.
void RegistrationCache::unwatchUncoveredLocked(uintptr_t begin, uintptr_t end) {
  if (!monitor_ || begin >= end) return;
  std::vector<Pending> cover;
  for (Entry* entry : overlappingLocked(begin, end)) {
    if (entry->watched) cover.push_back({std::max(entry->begin, begin), std::min(entry->end, end)});
  }
  for (const Pending& p : pending_) {
    if (p.begin < end && p.end > begin)
      cover.push_back({std::max(p.begin, begin), std::min(p.end, end)});
  }
  std::sort(cover.begin(), cover.end(),
            [](const Pending& a, const Pending& b) { return a.begin < b.begin; });
  uintptr_t cursor = begin;
  auto unwatch = [&](uintptr_t from, uintptr_t to) {
    auto done = monitor_->unwatch(from, to - from);
    // EINVAL/ENOMEM: gone or replaced by an unwatchable mapping. Harmless.
    if (!done.ok()) ZCIO_LOG(kDebug, "registration cache: unwatch: ", done.error().toString());
  };
  for (const Pending& c : cover) {
    if (c.begin > cursor) unwatch(cursor, c.begin);
    cursor = std::max(cursor, c.end);
  }
  if (cursor < end) unwatch(cursor, end);
}

// ---------------------------------------------------------------------------
// Map and LRU

namespace {

using EntryMap = std::multimap<uintptr_t, detail::CacheEntry*>;

// Entries are visited by decreasing begin, starting at the last one that
// begins at or before `begin`; one that begins max_length or more before
// `begin` ends at or before it, and so does every earlier one.
detail::CacheEntry* walkCovering(const EntryMap& map, size_t max_length, uintptr_t begin,
                                 uintptr_t end, uint32_t access, int max_steps) {
  auto it = map.upper_bound(begin);
  for (int steps = 0; it != map.begin() && steps < max_steps; ++steps) {
    --it;
    detail::CacheEntry* entry = it->second;
    if (begin - entry->begin >= max_length) return nullptr;
    if (entry->end >= end && (entry->access & access) == access) return entry;
  }
  return nullptr;
}

void collectOverlapping(const EntryMap& map, size_t max_length, uintptr_t begin, uintptr_t end,
                        std::vector<detail::CacheEntry*>& out) {
  auto it = map.lower_bound(end);  // everything before it begins below `end`
  while (it != map.begin()) {
    --it;
    detail::CacheEntry* entry = it->second;
    if (entry->begin + max_length <= begin) break;
    if (entry->end > begin) out.push_back(entry);
  }
}

}  // namespace

RegistrationCache::Entry* RegistrationCache::findCoveringLocked(uintptr_t begin, uintptr_t end,
                                                                uint32_t access) const {
  Entry* exact = indexFindLocked(begin);
  if (exact != nullptr && exact->end >= end && (exact->access & access) == access) return exact;
  if (!pinned_map_.empty()) {
    Entry* pinned = walkCovering(pinned_map_, pinned_max_length_, begin, end, access, INT32_MAX);
    if (pinned != nullptr) return pinned;
  }
  // Bounded: missing a covering entry far back only costs one more registration.
  return walkCovering(map_, max_length_, begin, end, access, kMaxLookupSteps);
}

std::vector<RegistrationCache::Entry*> RegistrationCache::overlappingLocked(uintptr_t begin,
                                                                            uintptr_t end) const {
  std::vector<Entry*> out;
  collectOverlapping(map_, max_length_, begin, end, out);
  collectOverlapping(pinned_map_, pinned_max_length_, begin, end, out);
  return out;
}

void RegistrationCache::insertLocked(Entry* entry) {
  entry->in_pinned_map = entry->pins > 0;
  EntryMap& map = entry->in_pinned_map ? pinned_map_ : map_;
  size_t& max_length = entry->in_pinned_map ? pinned_max_length_ : max_length_;
  entry->position = map.emplace(entry->begin, entry);
  max_length = std::max(max_length, entry->length());
  entry->findable = true;
  stats_.cached_bytes += entry->length();
  ++stats_.entries;
  if (entry->in_pinned_map) {
    ++stats_.pinned_entries;
  } else {
    unpinned_bytes_ += entry->length();
    entry->used.store(false, std::memory_order_relaxed);
    lruPushLocked(entry);
  }
  indexInsertLocked(entry);
  // Publishes the fields written while it was unfindable to lockless hits.
  entry->state.fetch_and(~kNeedsLock, std::memory_order_release);
}

void RegistrationCache::eraseFromMapLocked(Entry* entry) {
  EntryMap& map = entry->in_pinned_map ? pinned_map_ : map_;
  map.erase(entry->position);
  indexEraseLocked(entry);
  if (map.empty()) (entry->in_pinned_map ? pinned_max_length_ : max_length_) = 0;
  if (entry->in_lru) lruUnlinkLocked(entry);
  entry->findable = false;
  // From here a lockless hit fails on it, and its last release takes the mutex.
  entry->state.fetch_or(kUnfindable, std::memory_order_acq_rel);
  stats_.cached_bytes -= entry->length();
  --stats_.entries;
  if (entry->in_pinned_map) {
    --stats_.pinned_entries;
  } else {
    unpinned_bytes_ -= entry->length();
  }
  entry->in_pinned_map = false;
}

// Makes a findable entry unfindable; the caller unwatches its pages.
void RegistrationCache::retireLocked(Entry* entry, std::vector<Entry*>& dead) {
  eraseFromMapLocked(entry);
  entry->pins = 0;
  // Read after kUnfindable went up: a reference still held now is dropped
  // through the mutex, and that release marks it dead instead.
  if (entry->refs() == 0) markDeadLocked(entry, dead);
}

bool RegistrationCache::overLimitsLocked() const {
  return unpinned_bytes_ > options_.max_bytes ||
         stats_.entries - stats_.pinned_entries > options_.max_entries;
}

// CLOCK over the list: referenced entries leave it (kOffLru makes their last
// release put them back at the tail), used ones get a second chance at the
// tail, the first unused, unreferenced one goes. Bounded: every entry moves at
// most once. A lockless hit may take a reference to the victim while it is
// retired: retireLocked() sees it and leaves the entry to that release.
void RegistrationCache::enforceLimitsLocked(std::vector<Entry*>& dead) {
  std::vector<Pending> unwatch;
  size_t budget = 2 * lru_size_ + 1;
  while (overLimitsLocked() && lru_head_ != nullptr && budget-- > 0) {
    Entry* victim = lru_head_;
    // One RMW both reads the references and flags the entry, so that a last
    // release racing with this sees the flag or is seen here.
    if ((victim->state.fetch_or(kOffLru, std::memory_order_acq_rel) & kRefMask) > 0) {
      lruUnlinkLocked(victim);
      continue;
    }
    victim->state.fetch_and(~kOffLru, std::memory_order_relaxed);
    if (victim->used.load(std::memory_order_relaxed)) {
      victim->used.store(false, std::memory_order_relaxed);
      lruUnlinkLocked(victim);
      lruPushLocked(victim);
      continue;
    }
    if (victim->watched) unwatch.push_back({victim->begin, victim->end});
    retireLocked(victim, dead);
    ++stats_.evictions;
  }
  unwatchRangesLocked(std::move(unwatch));
}

void RegistrationCache::lruUnlinkLocked(Entry* entry) {
  (entry->lru_prev ? entry->lru_prev->lru_next : lru_head_) = entry->lru_next;
  (entry->lru_next ? entry->lru_next->lru_prev : lru_tail_) = entry->lru_prev;
  entry->lru_prev = entry->lru_next = nullptr;
  entry->in_lru = false;
  --lru_size_;
}

void RegistrationCache::lruPushLocked(Entry* entry) {
  entry->lru_prev = lru_tail_;
  entry->lru_next = nullptr;
  (lru_tail_ ? lru_tail_->lru_next : lru_head_) = entry;
  lru_tail_ = entry;
  entry->in_lru = true;
  ++lru_size_;
}

size_t RegistrationCache::indexHome(uintptr_t begin, size_t mask) const {
  return static_cast<size_t>(((begin >> page_shift_) * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

// Under the mutex every slot is ours to read, so relaxed loads will do.
RegistrationCache::Entry* RegistrationCache::indexFindLocked(uintptr_t begin) const {
  const IndexTable& table = *index_.load(std::memory_order_relaxed);
  for (size_t i = indexHome(begin, table.mask);; i = (i + 1) & table.mask) {
    const IndexSlot& slot = table.slots[i];
    const uintptr_t slot_begin = slot.begin.load(std::memory_order_relaxed);
    if (slot_begin == begin) return slot.entry.load(std::memory_order_relaxed);
    if (slot_begin == 0) return nullptr;
  }
}

namespace {
// A slot is written entry first (release: a reader that finds the pointer
// finds the entry's construction too), begin second.
void storeSlot(std::atomic<uintptr_t>& begin, std::atomic<detail::CacheEntry*>& entry,
               uintptr_t new_begin, detail::CacheEntry* new_entry) {
  entry.store(new_entry, std::memory_order_release);
  begin.store(new_begin, std::memory_order_relaxed);
}
}  // namespace

// One entry per begin: the newest. Others with the same begin stay findable
// through the maps. Growing publishes a new table; the old one stays
// allocated for lockless readers still probing it (they may miss, never crash).
void RegistrationCache::indexInsertLocked(Entry* entry) {
  if (entry->begin == 0) return;
  IndexTable* table = index_.load(std::memory_order_relaxed);
  if (2 * (index_count_ + 1) > table->mask + 1) {
    auto grown = std::make_unique<IndexTable>(2 * (table->mask + 1));
    IndexTable* old = table;
    table = grown.get();
    index_tables_.push_back(std::move(grown));
    index_.store(table, std::memory_order_release);
    index_count_ = 0;
    for (size_t i = 0; i <= old->mask; ++i) {
      if (old->slots[i].begin.load(std::memory_order_relaxed) != 0) {
        indexInsertLocked(old->slots[i].entry.load(std::memory_order_relaxed));
      }
    }
  }
  for (size_t i = indexHome(entry->begin, table->mask);; i = (i + 1) & table->mask) {
    IndexSlot& slot = table->slots[i];
    const uintptr_t slot_begin = slot.begin.load(std::memory_order_relaxed);
    if (slot_begin == entry->begin) {
      slot.entry.store(entry, std::memory_order_release);
      return;
    }
    if (slot_begin == 0) {
      storeSlot(slot.begin, slot.entry, entry->begin, entry);
      ++index_count_;
      return;
    }
  }
}

// Backward-shift deletion keeps probe sequences intact without tombstones.
void RegistrationCache::indexEraseLocked(Entry* entry) {
  IndexTable& table = *index_.load(std::memory_order_relaxed);
  const size_t mask = table.mask;
  auto begin_at = [&](size_t k) { return table.slots[k].begin.load(std::memory_order_relaxed); };
  size_t i = indexHome(entry->begin, mask);
  for (;; i = (i + 1) & mask) {
    if (begin_at(i) == 0) return;
    if (begin_at(i) == entry->begin) break;
  }
  // The index holds a newer entry with this begin.
  if (table.slots[i].entry.load(std::memory_order_relaxed) != entry) return;
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (begin_at(j) == 0) break;
    const size_t home = indexHome(begin_at(j), mask);
    // Move j back into the hole at i unless its home lies cyclically in (i, j].
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      storeSlot(table.slots[i].begin, table.slots[i].entry, begin_at(j),
                table.slots[j].entry.load(std::memory_order_relaxed));
      i = j;
    }
  }
  table.slots[i].begin.store(0, std::memory_order_relaxed);
  table.slots[i].entry.store(nullptr, std::memory_order_relaxed);
  --index_count_;
}

// ---------------------------------------------------------------------------
// Consumer thread: applies events promptly when no cache call does, so that
// invalidated entries are deregistered and their pages unwatched soon.

void RegistrationCache::consumerLoop() {
  const int fd = monitor_->consumerWakeFd();
  for (;;) {
    uint64_t value = 0;
    ssize_t n = ::read(fd, &value, sizeof value);
    if (n < 0 && errno == EINTR) continue;
    if (stopping_.load()) return;
    std::vector<Entry*> dead;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      syncLocked(dead);
    }
    if (!dead.empty()) destroyDead(dead);
  }
}

}  // namespace zcio::iobuf
