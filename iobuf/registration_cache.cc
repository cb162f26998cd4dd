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

struct CacheEntry {
  uintptr_t begin = 0;
  uintptr_t end = 0;
  uint32_t access = 0;
  RegistrationKeys keys;
  uint32_t refs = 0;
  uint32_t pins = 0;
  bool findable = false;  // in map_ or pinned_map_
  bool in_pinned_map = false;
  bool watched = false;  // its pages are registered with the monitor
  bool in_lru = false;
  bool used = false;  // hit since it last went to the LRU tail
  CacheEntry* lru_prev = nullptr;
  CacheEntry* lru_next = nullptr;
  std::multimap<uintptr_t, CacheEntry*>::iterator position;

  size_t length() const { return end - begin; }
};

}  // namespace detail

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
      options_(options),
      page_size_(static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE))),
      fork_generation_(forkGeneration()) {
  page_shift_ = static_cast<unsigned>(__builtin_ctzl(page_size_));
  index_.assign(1024, IndexSlot{0, nullptr});
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
    if (stats_.in_use != 0) {
      ZCIO_LOG(kError, "registration cache destroyed with ", stats_.in_use,
               " registrations still referenced; leaking them");
    }
    for (EntryMap* map : {&map_, &pinned_map_}) {
      for (auto& [begin, entry] : *map) {
        if (entry->refs == 0) dead.push_back(entry);
      }
      map->clear();
    }
  }
  destroyDead(dead);
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
  std::vector<Entry*> dead;
  RegistrationRef ref;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);  // apply every unmap the monitor has read: see header
    Entry* hit = forkedChild() ? nullptr : findCoveringLocked(begin, end, access);
    if (hit != nullptr) {
      ++stats_.hits;
      hit->used = true;
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
  }
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

    auto* entry = new Entry;
    entry->begin = begin;
    entry->end = end;
    entry->access = access;
    entry->keys = *keys;
    RegistrationRef ref;
    bool stale = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      syncLocked(dead);
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

RegistrationRef RegistrationCache::makeRefLocked(Entry* entry) {
  ++entry->refs;  // stays on the LRU list: eviction skips (and unlinks) referenced entries
  ++stats_.in_use;
  RegistrationRef ref;
  ref.cache_ = this;
  ref.entry_ = entry;
  ref.keys_ = entry->keys;
  ref.begin_ = entry->begin;
  ref.length_ = entry->length();
  ref.access_ = entry->access;
  ref.cached_ = entry->findable;
  return ref;
}

void RegistrationCache::release(Entry* entry) {
  std::vector<Entry*> dead;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    syncLocked(dead);  // may retire `entry`; then the decrement below finishes it
    --stats_.in_use;
    if (--entry->refs == 0) {
      if (!entry->findable) {
        markDeadLocked(entry, dead);
      } else if (entry->pins == 0) {
        if (!entry->in_lru) lruPushLocked(entry);
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

void RegistrationCache::destroyDead(std::vector<Entry*>& dead) {
  for (Entry* entry : dead) {
    auto done = registrar_.deregister(entry->keys);
    if (!done.ok()) {
      ZCIO_LOG(kWarn, "registration cache: deregister [", reinterpret_cast<void*>(entry->begin),
               ", +", entry->length(), ") failed: ", done.error().toString());
    }
    delete entry;
  }
  dead.clear();
}

// ---------------------------------------------------------------------------
// Memory events

void RegistrationCache::syncLocked(std::vector<Entry*>& dead) {
  if (!monitor_) return;
  const uint64_t started = monitor_->readsStarted();
  if (started == consumed_ticket_) return;  // the hit path: nothing read since last time
  monitor_->waitPublished(started);
  monitor_->consume([&](const AddressSpaceEvent& event) { applyEventLocked(event, dead); });
  consumed_ticket_ = started;
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
    entry->used = false;
    lruPushLocked(entry);
  }
  indexInsertLocked(entry);
}

void RegistrationCache::eraseFromMapLocked(Entry* entry) {
  EntryMap& map = entry->in_pinned_map ? pinned_map_ : map_;
  map.erase(entry->position);
  indexEraseLocked(entry);
  if (map.empty()) (entry->in_pinned_map ? pinned_max_length_ : max_length_) = 0;
  if (entry->in_lru) lruUnlinkLocked(entry);
  entry->findable = false;
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
  if (entry->refs == 0) markDeadLocked(entry, dead);
}

bool RegistrationCache::overLimitsLocked() const {
  return unpinned_bytes_ > options_.max_bytes ||
         stats_.entries - stats_.pinned_entries > options_.max_entries;
}

// CLOCK over the list: referenced entries leave it (their release puts them
// back at the tail), used ones get a second chance at the tail, the first
// unused, unreferenced one goes. Bounded: every entry moves at most once.
void RegistrationCache::enforceLimitsLocked(std::vector<Entry*>& dead) {
  std::vector<Pending> unwatch;
  size_t budget = 2 * lru_size_ + 1;
  while (overLimitsLocked() && lru_head_ != nullptr && budget-- > 0) {
    Entry* victim = lru_head_;
    if (victim->refs > 0) {
      lruUnlinkLocked(victim);
      continue;
    }
    if (victim->used) {
      victim->used = false;
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

size_t RegistrationCache::indexHome(uintptr_t begin) const {
  return static_cast<size_t>(((begin >> page_shift_) * 0x9E3779B97F4A7C15ull) >> 20) &
         (index_.size() - 1);
}

RegistrationCache::Entry* RegistrationCache::indexFindLocked(uintptr_t begin) const {
  const size_t mask = index_.size() - 1;
  for (size_t i = indexHome(begin);; i = (i + 1) & mask) {
    const IndexSlot& slot = index_[i];
    if (slot.begin == begin) return slot.entry;
    if (slot.begin == 0) return nullptr;
  }
}

// One entry per begin: the newest. Others with the same begin stay findable
// through the maps.
void RegistrationCache::indexInsertLocked(Entry* entry) {
  if (entry->begin == 0) return;
  if (2 * (index_count_ + 1) > index_.size()) {
    std::vector<IndexSlot> old(2 * index_.size(), IndexSlot{0, nullptr});
    old.swap(index_);
    index_count_ = 0;
    for (const IndexSlot& slot : old) {
      if (slot.begin != 0) indexInsertLocked(slot.entry);
    }
  }
  const size_t mask = index_.size() - 1;
  for (size_t i = indexHome(entry->begin);; i = (i + 1) & mask) {
    IndexSlot& slot = index_[i];
    if (slot.begin == entry->begin) {
      slot.entry = entry;
      return;
    }
    if (slot.begin == 0) {
      slot = {entry->begin, entry};
      ++index_count_;
      return;
    }
  }
}

// Backward-shift deletion keeps probe sequences intact without tombstones.
void RegistrationCache::indexEraseLocked(Entry* entry) {
  const size_t mask = index_.size() - 1;
  size_t i = indexHome(entry->begin);
  for (;; i = (i + 1) & mask) {
    if (index_[i].begin == 0) return;
    if (index_[i].begin == entry->begin) break;
  }
  if (index_[i].entry != entry) return;  // the index holds a newer entry with this begin
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    if (index_[j].begin == 0) break;
    const size_t home = indexHome(index_[j].begin);
    // Move j back into the hole at i unless its home lies cyclically in (i, j].
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (!stays) {
      index_[i] = index_[j];
      i = j;
    }
  }
  index_[i] = {0, nullptr};
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
