// RegistrationCache and UnmapMonitor: caching rules (page rounding, access
// superset, LRU, pins, invalidate) against a fake registrar, and soundness on
// unmap (DESIGN invariant 2): munmap/free/madvise/mremap followed by new
// memory at the same address must never hit the old registration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <malloc.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "iobuf/registration_cache.h"
#include "iobuf/unmap_monitor.h"

#if defined(__SANITIZE_ADDRESS__)
#define ZCIO_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ZCIO_TEST_ASAN 1
#endif
#endif

namespace zcio::iobuf {
namespace {

using namespace std::chrono_literals;

const size_t kPage = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
constexpr uint32_t kReadDest = kLocalWrite | kRemoteWrite;  // a readv destination

// Counts calls, hands out unique keys, and (optionally) records the first
// word of every page at registration time: a stand-in for the pages that
// ibv_reg_mr would pin, so a stale registration is detectable.
class FakeRegistrar final : public MemoryRegistrar {
 public:
  struct Registration {
    uintptr_t begin = 0;
    size_t length = 0;
    uint32_t access = 0;
    std::vector<uint64_t> stamps;
  };

  Result<RegistrationKeys> registerRange(void* addr, size_t length, uint32_t access) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (fail_next_) {
      fail_next_ = false;
      return makeError(EFAULT, "fake registrar: injected failure");
    }
    const uint64_t id = ++next_id_;
    Registration r{reinterpret_cast<uintptr_t>(addr), length, access, {}};
    if (record_stamps_) {
      for (size_t off = 0; off < length; off += kPage) {
        r.stamps.push_back(
            uint64_t{*reinterpret_cast<const volatile uint64_t*>(static_cast<char*>(addr) + off)});
      }
    }
    live_[id] = std::move(r);
    ++registrations_;
    return RegistrationKeys{static_cast<uint32_t>(id), static_cast<uint32_t>(id) ^ 0xabcdu, id};
  }

  Result<void> deregister(const RegistrationKeys& keys) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (live_.erase(keys.handle) == 0) ++bad_deregistrations_;
    ++deregistrations_;
    return okResult();
  }

  uint64_t registrations() const { return registrations_.load(); }
  uint64_t deregistrations() const { return deregistrations_.load(); }
  uint64_t badDeregistrations() const { return bad_deregistrations_.load(); }
  bool isLive(uint64_t handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    return live_.count(handle) != 0;
  }
  Registration get(uint64_t handle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = live_.find(handle);
    return it == live_.end() ? Registration{} : it->second;
  }
  void recordStamps() { record_stamps_ = true; }
  void failNext() {
    std::lock_guard<std::mutex> lock(mutex_);
    fail_next_ = true;
  }

 private:
  mutable std::mutex mutex_;
  std::map<uint64_t, Registration> live_;
  uint64_t next_id_ = 0;
  bool fail_next_ = false;
  bool record_stamps_ = false;
  std::atomic<uint64_t> registrations_{0};
  std::atomic<uint64_t> deregistrations_{0};
  std::atomic<uint64_t> bad_deregistrations_{0};
};

// An anonymous private mapping, populated (as registration would do).
class Mapping {
 public:
  explicit Mapping(size_t length, void* at = nullptr, int extra_flags = 0) : length_(length) {
    void* p = ::mmap(at, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags,
                     -1, 0);
    if (p != MAP_FAILED) {
      base_ = static_cast<char*>(p);
      std::memset(base_, 0x5a, length_);
    }
  }
  ~Mapping() { unmap(); }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  char* data() const { return base_; }
  bool ok() const { return base_ != nullptr; }
  void unmap() {
    if (base_ != nullptr) ::munmap(base_, length_);
    base_ = nullptr;
  }
  void forget() { base_ = nullptr; }  // the test unmapped or moved it itself

 private:
  char* base_ = nullptr;
  size_t length_;
};

// munmap()s `m` and maps fresh memory at the same address. Returns false if
// another thread's mmap took the hole in between (then try again elsewhere).
bool unmapAndRemapSameAddress(Mapping& m, std::unique_ptr<Mapping>& again, size_t length) {
  char* at = m.data();
  m.unmap();
  again = std::make_unique<Mapping>(length, at, MAP_FIXED_NOREPLACE);
  if (again->data() == at) return true;
  EXPECT_EQ(errno, EEXIST) << std::strerror(errno);
  return false;
}

bool eventually(const std::function<bool()>& condition, std::chrono::milliseconds limit = 5000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return condition();
}

// Whether the VMA holding `addr` is registered with a userfaultfd in MISSING
// mode ("um" in /proc/self/smaps VmFlags).
bool uffdWatched(const void* addr) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0;
    uintptr_t hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= a && a < hi;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line.find(" um") != std::string::npos;
  }
  return false;
}

RegistrationCache::Options defaultOptions() {
  return RegistrationCache::Options{};
}

class RegistrationCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = std::make_unique<RegistrationCache>(registrar_, options_);
    if (!cache_->caching()) GTEST_SKIP() << "userfaultfd unavailable: " << cache_->fallbackReason();
  }
  void reset(RegistrationCache::Options options) {
    cache_.reset();
    options_ = options;
    cache_ = std::make_unique<RegistrationCache>(registrar_, options_);
  }

  // Destroys the cache: nothing may still be referenced, and every
  // registration it made must have been deregistered exactly once.
  void expectEveryRegistrationReturned() {
    EXPECT_EQ(cache_->stats().in_use, 0u);
    cache_.reset();
    EXPECT_EQ(registrar_.registrations(), registrar_.deregistrations());
    EXPECT_EQ(registrar_.badDeregistrations(), 0u);
  }

  FakeRegistrar registrar_;
  RegistrationCache::Options options_ = defaultOptions();
  std::unique_ptr<RegistrationCache> cache_;
};

// ---------------------------------------------------------------------------
// Caching rules

TEST_F(RegistrationCacheTest, MissThenHitAndCounters) {
  Mapping m(16 * kPage);
  ASSERT_TRUE(m.ok());
  {
    auto ref = cache_->acquire(m.data(), 3 * kPage, kReadDest);
    ASSERT_TRUE(ref.ok()) << ref.error().toString();
    EXPECT_TRUE(ref->cached());
    EXPECT_EQ(ref->address(), m.data());
    EXPECT_EQ(ref->length(), 3 * kPage);
    EXPECT_EQ(ref->access(), kReadDest);
  }
  auto again = cache_->acquire(m.data(), 3 * kPage, kReadDest);
  ASSERT_TRUE(again.ok());
  auto stats = cache_->stats();
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.entries, 1u);
  EXPECT_EQ(stats.registered_bytes, 3 * kPage);
  EXPECT_EQ(stats.in_use, 1u);
  EXPECT_EQ(registrar_.registrations(), 1u);
  EXPECT_EQ(registrar_.deregistrations(), 0u);
}

TEST_F(RegistrationCacheTest, NeighbouringBuffersInTheSamePagesHit) {
  Mapping m(4 * kPage);
  ASSERT_TRUE(m.ok());
  auto first = cache_->acquire(m.data() + 100, 200, kReadDest);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->address(), m.data());  // rounded out to the page
  EXPECT_EQ(first->length(), kPage);
  auto neighbour = cache_->acquire(m.data() + 1000, 500, kReadDest);
  ASSERT_TRUE(neighbour.ok());
  EXPECT_EQ(neighbour->keys().handle, first->keys().handle);
  auto last_byte = cache_->acquire(m.data() + kPage - 1, 1, kReadDest);
  ASSERT_TRUE(last_byte.ok());
  EXPECT_EQ(last_byte->keys().handle, first->keys().handle);
  // Crossing into the next page needs a registration that covers both.
  auto crossing = cache_->acquire(m.data() + kPage - 10, 20, kReadDest);
  ASSERT_TRUE(crossing.ok());
  EXPECT_NE(crossing->keys().handle, first->keys().handle);
  EXPECT_EQ(crossing->address(), m.data());
  EXPECT_EQ(crossing->length(), 2 * kPage);
  // ... and now a buffer inside either page hits it (or the first one).
  auto inside = cache_->acquire(m.data() + kPage + 5, 5, kReadDest);
  ASSERT_TRUE(inside.ok());
  EXPECT_EQ(inside->keys().handle, crossing->keys().handle);
  EXPECT_EQ(registrar_.registrations(), 2u);
  EXPECT_EQ(cache_->stats().hits, 3u);
}

TEST_F(RegistrationCacheTest, AccessMustBeASuperset) {
  Mapping m(kPage);
  ASSERT_TRUE(m.ok());
  auto wide = cache_->acquire(m.data(), 64, kLocalWrite | kRemoteWrite);
  ASSERT_TRUE(wide.ok());
  auto narrower = cache_->acquire(m.data(), 64, kRemoteWrite);
  ASSERT_TRUE(narrower.ok());
  EXPECT_EQ(narrower->keys().handle, wide->keys().handle);  // subset: hit
  auto other = cache_->acquire(m.data(), 64, kRemoteRead);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->keys().handle, wide->keys().handle);  // not a subset: miss
  EXPECT_EQ(other->access(), uint32_t{kRemoteRead});     // registered as asked, never widened
  auto mixed = cache_->acquire(m.data(), 64, kLocalWrite | kRemoteRead);
  ASSERT_TRUE(mixed.ok());
  EXPECT_NE(mixed->keys().handle, wide->keys().handle);
  EXPECT_NE(mixed->keys().handle, other->keys().handle);
  EXPECT_EQ(registrar_.registrations(), 3u);
  auto stats = cache_->stats();
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 3u);
}

TEST_F(RegistrationCacheTest, LruEvictionUnderTheByteCap) {
  RegistrationCache::Options options;
  options.max_bytes = 4 * kPage;
  reset(options);
  Mapping m(16 * kPage);
  ASSERT_TRUE(m.ok());
  auto page = [&](int i) { return m.data() + 2 * i * kPage; };  // gaps: no merging anywhere
  std::vector<uint64_t> handles;
  for (int i = 0; i < 4; ++i) {
    auto ref = cache_->acquire(page(i), kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
    handles.push_back(ref->keys().handle);
  }
  EXPECT_EQ(cache_->stats().evictions, 0u);
  { auto touch = cache_->acquire(page(0), 8, kReadDest); }  // 0 becomes most recent
  { auto fifth = cache_->acquire(page(4), kPage, kReadDest); }
  auto stats = cache_->stats();
  EXPECT_EQ(stats.evictions, 1u);
  EXPECT_EQ(stats.cached_bytes, 4 * kPage);
  EXPECT_FALSE(registrar_.isLive(handles[1]));  // least recently used
  EXPECT_TRUE(registrar_.isLive(handles[0]));
  EXPECT_FALSE(uffdWatched(page(1)));  // its watch went with it
  EXPECT_TRUE(uffdWatched(page(0)));
  auto hit = cache_->acquire(page(0), kPage, kReadDest);
  ASSERT_TRUE(hit.ok());
  EXPECT_EQ(hit->keys().handle, handles[0]);
}

TEST_F(RegistrationCacheTest, ReferencedEntriesAreNeverEvicted) {
  RegistrationCache::Options options;
  options.max_bytes = 2 * kPage;
  reset(options);
  Mapping m(16 * kPage);
  ASSERT_TRUE(m.ok());
  std::vector<RegistrationRef> held;
  for (int i = 0; i < 5; ++i) {
    auto ref = cache_->acquire(m.data() + 2 * i * kPage, kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
    held.push_back(std::move(*ref));
  }
  EXPECT_EQ(cache_->stats().evictions, 0u);  // 5 pages > cap, all referenced
  EXPECT_EQ(registrar_.deregistrations(), 0u);
  for (auto& ref : held) EXPECT_TRUE(registrar_.isLive(ref.keys().handle));
  const uint64_t first = held[0].keys().handle;
  held[0].reset();  // over the cap and unreferenced now: goes at once
  EXPECT_EQ(cache_->stats().evictions, 1u);
  EXPECT_FALSE(registrar_.isLive(first));
  held.clear();
  auto stats = cache_->stats();
  EXPECT_EQ(stats.cached_bytes, 2 * kPage);
  EXPECT_EQ(stats.evictions, 3u);
}

TEST_F(RegistrationCacheTest, EntryCap) {
  RegistrationCache::Options options;
  options.max_entries = 3;
  reset(options);
  Mapping m(16 * kPage);
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 6; ++i) {
    auto ref = cache_->acquire(m.data() + 2 * i * kPage, kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
  }
  auto stats = cache_->stats();
  EXPECT_EQ(stats.entries, 3u);
  EXPECT_EQ(stats.evictions, 3u);
  EXPECT_EQ(registrar_.deregistrations(), 3u);
}

TEST_F(RegistrationCacheTest, EvictionKeepsWatchesAnOverlappingEntryNeeds) {
  RegistrationCache::Options options;
  options.max_entries = 1;
  reset(options);
  Mapping m(8 * kPage);
  ASSERT_TRUE(m.ok());
  { auto a = cache_->acquire(m.data(), 2 * kPage, kReadDest); }        // [0, 2)
  auto b = cache_->acquire(m.data() + kPage, 2 * kPage, kRemoteRead);  // [1, 3), evicts a
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(cache_->stats().evictions, 1u);
  EXPECT_FALSE(uffdWatched(m.data()));
  EXPECT_TRUE(uffdWatched(m.data() + kPage));  // still b's
  EXPECT_TRUE(uffdWatched(m.data() + 2 * kPage));
}

TEST_F(RegistrationCacheTest, PinnedMemoryIsNeverReregisteredNorEvicted) {
  RegistrationCache::Options options;
  options.max_bytes = 4 * kPage;
  reset(options);
  const size_t pinned_size = 256 * kPage;
  Mapping pinned(pinned_size);
  Mapping other(64 * kPage);
  ASSERT_TRUE(pinned.ok() && other.ok());
  // Entries cached inside the region before it is pinned must not hide it
  // from lookups (the general map's walk is bounded).
  for (int i = 0; i < 40; ++i) {
    auto ref = cache_->acquire(pinned.data() + (100 + i) * kPage, 16, kRemoteRead);
    ASSERT_TRUE(ref.ok());
  }
  auto keys = cache_->pin(pinned.data(), pinned_size, kLocalWrite | kRemoteWrite | kRemoteRead);
  ASSERT_TRUE(keys.ok()) << keys.error().toString();
  const uint64_t before = registrar_.registrations();
  std::mt19937 rng(7);
  for (int i = 0; i < 1000; ++i) {
    size_t offset = rng() % (pinned_size - 1);
    size_t length = 1 + rng() % (pinned_size - offset);
    auto ref = cache_->acquire(pinned.data() + offset, length, kRemoteWrite);
    ASSERT_TRUE(ref.ok());
    ASSERT_EQ(ref->keys().handle, keys->handle) << "offset " << offset << " length " << length;
  }
  EXPECT_EQ(registrar_.registrations(), before);
  // Churn far past the cap: the pin stays.
  for (int i = 0; i < 32; ++i) {
    auto ref = cache_->acquire(other.data() + 2 * i * kPage, kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
  }
  EXPECT_GT(cache_->stats().evictions, 0u);
  EXPECT_TRUE(registrar_.isLive(keys->handle));
  EXPECT_EQ(cache_->stats().pinned_entries, 1u);
  {
    auto ref = cache_->acquire(pinned.data(), pinned_size, kRemoteRead);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(ref->keys().handle, keys->handle);
    // Pinning again counts; one unpin leaves it pinned.
    auto again = cache_->pin(pinned.data(), pinned_size, kRemoteRead);
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(again->handle, keys->handle);
    ASSERT_TRUE(cache_->unpin(pinned.data(), pinned_size).ok());
    EXPECT_TRUE(registrar_.isLive(keys->handle));
    ASSERT_TRUE(cache_->unpin(pinned.data(), pinned_size).ok());
    EXPECT_TRUE(registrar_.isLive(keys->handle));  // still referenced by `ref`
    auto after = cache_->acquire(pinned.data() + 3 * kPage, 8, kRemoteWrite);
    ASSERT_TRUE(after.ok());
    EXPECT_NE(after->keys().handle, keys->handle);  // no longer findable
  }
  EXPECT_FALSE(registrar_.isLive(keys->handle));  // last reference gone
  auto missing = cache_->unpin(pinned.data(), pinned_size);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
}

TEST_F(RegistrationCacheTest, PinPromotesAnExactCachedEntry) {
  Mapping m(4 * kPage);
  ASSERT_TRUE(m.ok());
  uint64_t handle = 0;
  {
    auto ref = cache_->acquire(m.data(), 4 * kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
    handle = ref->keys().handle;
  }
  auto keys = cache_->pin(m.data(), 4 * kPage, kRemoteWrite);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->handle, handle);
  EXPECT_EQ(registrar_.registrations(), 1u);
  EXPECT_EQ(cache_->stats().pinned_entries, 1u);
}

TEST_F(RegistrationCacheTest, InvalidateSemantics) {
  Mapping m(8 * kPage);
  ASSERT_TRUE(m.ok());
  auto held = cache_->acquire(m.data(), 2 * kPage, kReadDest);
  ASSERT_TRUE(held.ok());
  uint64_t idle_handle = 0;
  {
    auto idle = cache_->acquire(m.data() + 4 * kPage, kPage, kReadDest);
    ASSERT_TRUE(idle.ok());
    idle_handle = idle->keys().handle;
  }
  auto untouched = cache_->acquire(m.data() + 6 * kPage, kPage, kReadDest);
  ASSERT_TRUE(untouched.ok());
  cache_->invalidate(m.data() + kPage + 17, 3 * kPage);  // overlaps held and idle
  EXPECT_FALSE(registrar_.isLive(idle_handle));          // unreferenced: deregistered now
  EXPECT_TRUE(registrar_.isLive(held->keys().handle));   // referenced: still usable by its holder
  EXPECT_EQ(cache_->stats().invalidations, 2u);
  auto after = cache_->acquire(m.data(), 2 * kPage, kReadDest);
  ASSERT_TRUE(after.ok());
  EXPECT_NE(after->keys().handle, held->keys().handle);  // not findable any more
  const uint64_t old = held->keys().handle;
  held->reset();
  EXPECT_FALSE(registrar_.isLive(old));
  auto still = cache_->acquire(m.data() + 6 * kPage, 10, kReadDest);
  ASSERT_TRUE(still.ok());
  EXPECT_EQ(still->keys().handle, untouched->keys().handle);
}

TEST_F(RegistrationCacheTest, BadRangesAndRegistrarErrors) {
  EXPECT_EQ(cache_->acquire(nullptr, 10, kReadDest).error().code, EINVAL);
  Mapping m(kPage);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(cache_->acquire(m.data(), 0, kReadDest).error().code, EINVAL);
  EXPECT_EQ(cache_->acquire(reinterpret_cast<void*>(UINTPTR_MAX - 10), 100, kReadDest).error().code,
            EINVAL);
  registrar_.failNext();
  auto failed = cache_->acquire(m.data(), 10, kReadDest);
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, EFAULT);
  EXPECT_FALSE(uffdWatched(m.data()));  // the watch was undone
  auto ok = cache_->acquire(m.data(), 10, kReadDest);
  EXPECT_TRUE(ok.ok());
}

TEST_F(RegistrationCacheTest, MoveOnlyRefReleasesOnce) {
  Mapping m(kPage);
  ASSERT_TRUE(m.ok());
  auto ref = cache_->acquire(m.data(), 10, kReadDest);
  ASSERT_TRUE(ref.ok());
  RegistrationRef moved = std::move(*ref);
  EXPECT_FALSE(static_cast<bool>(*ref));
  RegistrationRef target;
  target = std::move(moved);
  EXPECT_EQ(cache_->stats().in_use, 1u);
  target.reset();
  target.reset();
  EXPECT_EQ(cache_->stats().in_use, 0u);
}

// ---------------------------------------------------------------------------
// Soundness on unmap (invariant 2)

TEST_F(RegistrationCacheTest, MunmapThenMmapAtTheSameAddressMisses) {
  const size_t length = 4 * kPage;
  int rounds = 0;
  for (int attempt = 0; attempt < 100 && rounds < 20; ++attempt) {
    Mapping m(length);
    ASSERT_TRUE(m.ok());
    char* at = m.data();
    const uint64_t regs = registrar_.registrations();
    uint64_t old_handle = 0;
    {
      auto ref = cache_->acquire(at + 10, 2 * kPage, kReadDest);
      ASSERT_TRUE(ref.ok());
      old_handle = ref->keys().handle;
    }
    std::unique_ptr<Mapping> again;
    if (!unmapAndRemapSameAddress(m, again, length)) continue;
    ++rounds;
    const uint64_t hits = cache_->stats().hits;
    auto ref = cache_->acquire(at + 10, 2 * kPage, kReadDest);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(cache_->stats().hits, hits);
    EXPECT_GE(cache_->stats().monitor.unmap_events, static_cast<uint64_t>(rounds));
    ASSERT_NE(ref->keys().handle, old_handle)
        << "stale registration reused (round " << rounds << ")";
    EXPECT_EQ(registrar_.registrations(), regs + 2);  // the old one and a new one
    // Deregistered by this acquire or by the monitor's consumer thread.
    EXPECT_TRUE(eventually([&] { return !registrar_.isLive(old_handle); }));
  }
  ASSERT_EQ(rounds, 20);
  cache_.reset();  // the last `again` went with its entry still cached
  EXPECT_EQ(registrar_.registrations(), registrar_.deregistrations());
  EXPECT_EQ(registrar_.badDeregistrations(), 0u);
}

TEST_F(RegistrationCacheTest, MmapFixedOverACachedRangeMisses) {
  // Replacing a mapping in place (no hole in between) is an unmap too.
  const size_t length = 4 * kPage;
  Mapping m(length);
  ASSERT_TRUE(m.ok());
  uint64_t old_handle = 0;
  {
    auto ref = cache_->acquire(m.data(), length, kReadDest);
    ASSERT_TRUE(ref.ok());
    old_handle = ref->keys().handle;
  }
  void* p = ::mmap(m.data() + kPage, kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  ASSERT_EQ(p, m.data() + kPage);
  auto ref = cache_->acquire(m.data(), length, kReadDest);
  ASSERT_TRUE(ref.ok());
  EXPECT_NE(ref->keys().handle, old_handle);
  EXPECT_TRUE(eventually([&] { return !registrar_.isLive(old_handle); }));
}

TEST_F(RegistrationCacheTest, MunmapWhileReferencedDeregistersOnRelease) {
  const size_t length = 2 * kPage;
  for (int attempt = 0; attempt < 100; ++attempt) {
    Mapping m(length);
    ASSERT_TRUE(m.ok());
    char* at = m.data();
    auto held = cache_->acquire(at, length, kReadDest);
    ASSERT_TRUE(held.ok());
    std::unique_ptr<Mapping> again;
    if (!unmapAndRemapSameAddress(m, again, length)) continue;
    auto fresh = cache_->acquire(at, length, kReadDest);
    ASSERT_TRUE(fresh.ok());
    EXPECT_NE(fresh->keys().handle, held->keys().handle);
    EXPECT_TRUE(registrar_.isLive(held->keys().handle));  // its holder still owns it
    const uint64_t old = held->keys().handle;
    held->reset();
    EXPECT_FALSE(registrar_.isLive(old));
    return;
  }
  FAIL() << "could never map the same address again";
}

TEST_F(RegistrationCacheTest, FreeThenMallocOfALargeBlockMisses) {
#if defined(ZCIO_TEST_ASAN)
  GTEST_SKIP()
      << "ASan's allocator quarantines freed blocks, so an address is never reused at once";
#else
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);  // fixed: no dynamic threshold growth after a free
  const size_t size = 8 << 20;
  int reused = 0;
  for (int round = 0; round < 10; ++round) {
    char* first = static_cast<char*>(std::malloc(size));
    ASSERT_NE(first, nullptr);
    std::memset(first, 1, size);
    uint64_t old_handle = 0;
    {
      auto ref = cache_->acquire(first, size, kReadDest);
      ASSERT_TRUE(ref.ok());
      old_handle = ref->keys().handle;
    }
    std::free(first);
    char* second = static_cast<char*>(std::malloc(size));
    ASSERT_NE(second, nullptr);
    std::memset(second, 2, size);
    if (second == first) {
      ++reused;
      auto ref = cache_->acquire(second, size, kReadDest);
      ASSERT_TRUE(ref.ok());
      EXPECT_NE(ref->keys().handle, old_handle) << "stale registration after free()+malloc()";
      EXPECT_FALSE(registrar_.isLive(old_handle));
    }
    std::free(second);
  }
  if (reused == 0) GTEST_SKIP() << "the allocator never handed the same address back";
  EXPECT_GT(cache_->stats().monitor.unmap_events, 0u);
#endif
}

TEST_F(RegistrationCacheTest, MadviseDontneedInvalidatesAndTouchingDoesNotHang) {
  const size_t length = 4 * kPage;
  Mapping m(length);
  ASSERT_TRUE(m.ok());
  uint64_t old_handle = 0;
  {
    auto ref = cache_->acquire(m.data(), length, kReadDest);
    ASSERT_TRUE(ref.ok());
    old_handle = ref->keys().handle;
  }
  auto held =
      cache_->acquire(m.data() + kPage, kPage, kReadDest);  // a hit, referenced across the madvise
  ASSERT_TRUE(held.ok());
  EXPECT_EQ(held->keys().handle, old_handle);
  ASSERT_EQ(::madvise(m.data() + kPage, kPage, MADV_DONTNEED), 0);
  // Another thread touches the dropped page: it must get a zero page, not hang.
  auto toucher = std::async(std::launch::async, [&] {
    volatile char* p = m.data() + kPage;
    char seen = p[0];
    p[1] = 7;
    return seen;
  });
  if (toucher.wait_for(5s) != std::future_status::ready) {
    held->reset();
    cache_.reset();  // closing the userfaultfd wakes the thread, so the test can end
    FAIL() << "touching a dropped page hung";
  }
  EXPECT_EQ(toucher.get(), 0);
  auto ref = cache_->acquire(m.data(), length, kReadDest);
  ASSERT_TRUE(ref.ok());
  EXPECT_NE(ref->keys().handle, old_handle);
  EXPECT_TRUE(registrar_.isLive(old_handle));  // `held` still references it
  held->reset();
  EXPECT_FALSE(registrar_.isLive(old_handle));
  EXPECT_GE(cache_->stats().monitor.remove_events, 1u);
}

TEST_F(RegistrationCacheTest, MremapAwayThenMmapAtTheOldAddressMisses) {
  const size_t length = 4 * kPage;
  for (int attempt = 0; attempt < 100; ++attempt) {
    Mapping m(length);
    Mapping target(length);
    ASSERT_TRUE(m.ok() && target.ok());
    char* at = m.data();
    uint64_t old_handle = 0;
    {
      auto ref = cache_->acquire(at, length, kReadDest);
      ASSERT_TRUE(ref.ok());
      old_handle = ref->keys().handle;
    }
    void* moved = ::mremap(at, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, target.data());
    ASSERT_EQ(moved, target.data());
    m.forget();
    Mapping again(length, at, MAP_FIXED_NOREPLACE);
    if (again.data() != at) continue;  // someone else's mmap took the hole
    auto ref = cache_->acquire(at, length, kReadDest);
    ASSERT_TRUE(ref.ok());
    EXPECT_NE(ref->keys().handle, old_handle);
    EXPECT_TRUE(eventually([&] { return !registrar_.isLive(old_handle); }));
    // The moved memory is not cached under its new address either.
    auto there = cache_->acquire(target.data(), length, kReadDest);
    ASSERT_TRUE(there.ok());
    EXPECT_NE(there->keys().handle, old_handle);
    EXPECT_GE(cache_->stats().monitor.remap_events, 1u);
    return;
  }
  FAIL() << "could never map the same address again";
}

TEST_F(RegistrationCacheTest, MovedMappingDoesNotKeepOurWatch) {
  const size_t length = 4 * kPage;
  Mapping m(length);
  Mapping target(length);
  ASSERT_TRUE(m.ok() && target.ok());
  { auto ref = cache_->acquire(m.data(), length, kReadDest); }
  void* moved = ::mremap(m.data(), length, length, MREMAP_MAYMOVE | MREMAP_FIXED, target.data());
  ASSERT_EQ(moved, target.data());
  m.forget();
  EXPECT_TRUE(eventually([&] { return !uffdWatched(target.data()); }));
}

TEST_F(RegistrationCacheTest, MremapShrinkInvalidatesTheTail) {
  const size_t length = 8 * kPage;
  Mapping m(length);
  ASSERT_TRUE(m.ok());
  char* at = m.data();
  uint64_t tail_handle = 0;
  uint64_t head_handle = 0;
  {
    auto tail = cache_->acquire(at + 6 * kPage, kPage, kReadDest);
    auto head = cache_->acquire(at, kPage, kReadDest);
    ASSERT_TRUE(tail.ok() && head.ok());
    tail_handle = tail->keys().handle;
    head_handle = head->keys().handle;
  }
  ASSERT_EQ(::mremap(at, length, 4 * kPage, 0), at);
  Mapping refill(4 * kPage, at + 4 * kPage, MAP_FIXED_NOREPLACE);
  ASSERT_EQ(refill.data(), at + 4 * kPage);
  auto tail = cache_->acquire(at + 6 * kPage, kPage, kReadDest);
  auto head = cache_->acquire(at, kPage, kReadDest);
  ASSERT_TRUE(tail.ok() && head.ok());
  EXPECT_NE(tail->keys().handle, tail_handle);
  EXPECT_EQ(head->keys().handle, head_handle);  // untouched part still cached
  ::munmap(at, 4 * kPage);
  m.forget();
}

TEST_F(RegistrationCacheTest, UnwatchableMemoryIsRegisteredPerRequest) {
  // A private file mapping on a disk filesystem: userfaultfd MISSING mode
  // refuses it (EINVAL), so it must never be cached.
  int fd = ::open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct statfs fs {};
  if (::fstatfs(fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    ::close(fd);
    // shmem files take userfaultfd MISSING mode, so they are watchable.
    GTEST_SKIP()
        << "this test binary is on tmpfs, where userfaultfd accepts a private file mapping";
  }
  void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ASSERT_NE(p, MAP_FAILED);
  for (int i = 0; i < 3; ++i) {
    auto ref = cache_->acquire(p, 100, kRemoteRead);
    ASSERT_TRUE(ref.ok());
    EXPECT_FALSE(ref->cached());
  }
  EXPECT_EQ(registrar_.registrations(), 3u);
  EXPECT_EQ(registrar_.deregistrations(), 3u);
  auto stats = cache_->stats();
  EXPECT_EQ(stats.uncached, 3u);
  EXPECT_EQ(stats.entries, 0u);
  EXPECT_EQ(stats.registered_bytes, 0u);
  ::munmap(p, kPage);
}

TEST(RegistrationCacheFallback, WithoutTheMonitorEveryAcquireRegisters) {
  FakeRegistrar registrar;
  RegistrationCache::Options options;
  options.monitor_unmaps = false;
  RegistrationCache cache(registrar, options);
  EXPECT_FALSE(cache.caching());
  EXPECT_FALSE(cache.fallbackReason().empty());
  Mapping m(4 * kPage);
  ASSERT_TRUE(m.ok());
  for (int i = 0; i < 10; ++i) {
    auto ref = cache.acquire(m.data(), 100, kReadDest);
    ASSERT_TRUE(ref.ok());
    EXPECT_FALSE(ref->cached());
  }
  EXPECT_EQ(registrar.registrations(), 10u);
  EXPECT_EQ(registrar.deregistrations(), 10u);
  // pin() still works and is a hit from then on.
  auto keys = cache.pin(m.data(), 4 * kPage, kReadDest);
  ASSERT_TRUE(keys.ok());
  for (int i = 0; i < 10; ++i) {
    auto ref = cache.acquire(m.data() + i * 100, 100, kReadDest);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(ref->keys().handle, keys->handle);
  }
  EXPECT_EQ(registrar.registrations(), 11u);
  ASSERT_TRUE(cache.unpin(m.data(), 4 * kPage).ok());
  EXPECT_EQ(registrar.deregistrations(), 11u);
}

TEST_F(RegistrationCacheTest, ForkedChildNeverHitsTheParentsEntries) {
  Mapping m(kPage);
  ASSERT_TRUE(m.ok());
  { auto ref = cache_->acquire(m.data(), 10, kReadDest); }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto ref = cache_->acquire(m.data(), 10, kReadDest);
    ::_exit(ref.ok() && !ref->cached() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto ref = cache_->acquire(m.data(), 10, kReadDest);  // the parent still hits
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(cache_->stats().hits, 1u);
}

TEST_F(RegistrationCacheTest, ConcurrentMissesOnOneRangeShareAnEntry) {
  Mapping m(16 * kPage);
  ASSERT_TRUE(m.ok());
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        auto ref = cache_->acquire(m.data() + (i % 8) * kPage, kPage, kReadDest);
        if (!ref.ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(cache_->stats().entries, 8u);
  EXPECT_EQ(registrar_.registrations() - registrar_.deregistrations(), 8u);
}

// A lockless hit read the index slot, and before it takes its reference the
// entry leaves the cache: invalidated, evicted, or evicted and recycled for
// another range. The hit must notice and miss, never return that entry.
TEST_F(RegistrationCacheTest, LocklessHitLosesToARetireInTheMiddle) {
  Mapping m(4 * kPage);
  ASSERT_TRUE(m.ok());
  char* const target = m.data();
  char* const other = m.data() + 2 * kPage;
  std::function<void()> race;
  RegistrationCache::Options options;
  options.max_entries = 1;
  options.after_lockless_probe = [&] {
    if (auto run = std::exchange(race, nullptr)) run();
  };
  reset(options);
  std::vector<RegistrationRef> keep;
  auto keepOther = [&] {
    auto ref = cache_->acquire(other, 8, kReadDest);
    ASSERT_TRUE(ref.ok());
    keep.push_back(std::move(*ref));
  };
  const std::vector<std::pair<const char*, std::function<void()>>> cases = {
      {"invalidated", [&] { cache_->invalidate(target, kPage); }},
      // The cap is one entry: caching `other` evicts `target` (kept alive
      // here so that eviction is all that happens).
      {"evicted", [&] { keepOther(); }},
      // The evicted entry is recycled: the next miss reuses it for `other`.
      {"recycled",
       [&] {
         cache_->invalidate(target, kPage);
         keepOther();
       }},
  };
  for (const auto& [what, staged] : cases) {
    SCOPED_TRACE(what);
    keep.clear();
    cache_->invalidate(m.data(), 4 * kPage);
    uint64_t old_handle = 0;
    {
      auto first = cache_->acquire(target, 8, kReadDest);
      ASSERT_TRUE(first.ok());
      old_handle = first->keys().handle;
    }
    race = staged;
    auto ref = cache_->acquire(target, 8, kReadDest);
    ASSERT_TRUE(ref.ok());
    EXPECT_EQ(race, nullptr) << "the race was not staged (no lockless probe)";
    EXPECT_FALSE(ref->hit());
    EXPECT_NE(ref->keys().handle, old_handle);
    EXPECT_FALSE(registrar_.isLive(old_handle));
    EXPECT_TRUE(registrar_.isLive(ref->keys().handle));
    EXPECT_EQ(ref->address(), target);
  }
  keep.clear();
  expectEveryRegistrationReturned();
}

// Hits take no mutex: threads hit, hold and drop entries of a cache whose cap
// is far below the working set, so eviction (under the mutex) retires and
// recycles entries while lockless hits race it. A hit must always return a
// registration that is live (not yet deregistered) for a range covering the
// request, and every registration must be deregistered exactly once.
TEST_F(RegistrationCacheTest, StressLocklessHitsRaceEviction) {
  RegistrationCache::Options options;
  options.max_entries = 8;
  reset(options);
  constexpr int kPages = 48;
  Mapping m(kPages * kPage);
  ASSERT_TRUE(m.ok());
  std::atomic<int> wrong{0};
  std::atomic<uint64_t> held_hits{0};
  auto worker = [&](int seed) {
    std::mt19937 rng(seed);
    std::vector<RegistrationRef> held;
    for (int i = 0; i < 20000; ++i) {
      // A hot set just above the cap: most acquires hit, and the misses evict
      // entries other threads are hitting at that moment.
      const int page =
          (rng() % 8 != 0) ? static_cast<int>(rng() % 10) : static_cast<int>(rng() % kPages);
      char* at = m.data() + page * kPage + rng() % 64;
      auto ref = cache_->acquire(at, 100, kReadDest);
      if (!ref.ok()) {
        ++wrong;
        continue;
      }
      const auto reg = registrar_.get(ref->keys().handle);
      const auto a = reinterpret_cast<uintptr_t>(at);
      if (!registrar_.isLive(ref->keys().handle) || reg.begin > a ||
          reg.begin + reg.length < a + 100 ||
          reinterpret_cast<uintptr_t>(ref->address()) != reg.begin) {
        ++wrong;
      }
      if (ref->hit()) ++held_hits;
      held.push_back(std::move(*ref));
      if (held.size() > rng() % 4)
        held.erase(held.begin() + static_cast<long>(rng() % held.size()));
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(worker, t + 7);
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0) << "a hit returned a dead or foreign registration";
  auto stats = cache_->stats();
  EXPECT_GT(held_hits.load(), 10000u);
  EXPECT_GT(stats.evictions, 1000u);
  EXPECT_LE(stats.entries, 8u);
  expectEveryRegistrationReturned();
}

// Threads acquire/release overlapping ranges while another thread unmaps,
// remaps, drops and moves the memory under them. Every page carries a
// generation stamp and the fake registrar records the stamps it "pinned": a
// hit whose recorded stamps differ from the memory is a stale registration.
TEST_F(RegistrationCacheTest, StressAcquireWhileRemapping) {
  registrar_.recordStamps();
  constexpr int kSlots = 8;
  constexpr size_t kSlotPages = 4;
  const size_t slot_bytes = kSlotPages * kPage;
  Mapping region(kSlots * slot_bytes);
  Mapping scratch(slot_bytes);
  ASSERT_TRUE(region.ok() && scratch.ok());
  char* base = region.data();
  std::atomic<uint64_t> generation{1};
  auto stamp = [&](int slot) {
    const uint64_t g = generation.fetch_add(1);
    for (size_t p = 0; p < kSlotPages; ++p) {
      *reinterpret_cast<uint64_t*>(base + slot * slot_bytes + p * kPage) = g;
    }
  };
  for (int s = 0; s < kSlots; ++s) stamp(s);
  std::shared_mutex slot_locks[kSlots];
  bool lost[kSlots] = {};  // guarded by slot_locks
  std::atomic<int> replacements{0};
  std::atomic<bool> done{false};
  std::atomic<int> stale{0};
  std::atomic<int> errors{0};
  std::atomic<uint64_t> acquisitions{0};

  auto acquirer = [&](int seed) {
    std::mt19937 rng(seed);
    while (!done.load()) {
      const int first = static_cast<int>(rng() % kSlots);
      const int last = std::min(kSlots - 1, first + static_cast<int>(rng() % 2));
      std::vector<std::shared_lock<std::shared_mutex>> locks;
      bool skip = false;
      for (int s = first; s <= last; ++s) {
        locks.emplace_back(slot_locks[s]);
        skip = skip || lost[s];
      }
      if (skip) continue;
      char* lo = base + first * slot_bytes;
      const size_t span = (last - first + 1) * slot_bytes;
      const size_t offset = rng() % span;
      const size_t length = 1 + rng() % (span - offset);
      const uint32_t access = (rng() % 2) ? kReadDest : uint32_t{kRemoteRead};
      auto ref = cache_->acquire(lo + offset, length, access);
      if (!ref.ok()) {
        ++errors;
        continue;
      }
      ++acquisitions;
      auto reg = registrar_.get(ref->keys().handle);
      if (reg.stamps.empty()) {
        ++errors;
        continue;
      }
      const uintptr_t from = reinterpret_cast<uintptr_t>(lo + offset) & ~(kPage - 1);
      const uintptr_t to = reinterpret_cast<uintptr_t>(lo + offset + length);
      for (uintptr_t page = from; page < to; page += kPage) {
        const uint64_t now = *reinterpret_cast<const uint64_t*>(page);
        const uint64_t then = reg.stamps[(page - reg.begin) / kPage];
        if (now != then) ++stale;
      }
    }
  };
  // Every way of replacing a slot's memory. Those that leave a hole may see
  // another thread's mmap land in it: that slot is then retired ("lost").
  auto remapper = [&] {
    std::mt19937 rng(99);
    for (int i = 0; i < 800; ++i) {
      const int s = static_cast<int>(rng() % kSlots);
      std::unique_lock<std::shared_mutex> lock(slot_locks[s]);
      if (lost[s]) continue;
      char* at = base + s * slot_bytes;
      const int flags = MAP_PRIVATE | MAP_ANONYMOUS;
      switch (rng() % 4) {
        case 0:  // munmap, then fresh memory at the same address
          ASSERT_EQ(::munmap(at, slot_bytes), 0);
          if (::mmap(at, slot_bytes, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, -1, 0) !=
              at)
            lost[s] = true;
          break;
        case 1:  // drop the pages
          ASSERT_EQ(::madvise(at, slot_bytes, MADV_DONTNEED), 0);
          break;
        case 2:  // move the pages away (page by page: cached ranges split VMAs), map fresh memory
          for (size_t p = 0; p < kSlotPages; ++p) {
            void* to = scratch.data() + p * kPage;
            ASSERT_EQ(::mremap(at + p * kPage, kPage, kPage, MREMAP_MAYMOVE | MREMAP_FIXED, to),
                      to);
          }
          if (::mmap(at, slot_bytes, PROT_READ | PROT_WRITE, flags | MAP_FIXED_NOREPLACE, -1, 0) !=
              at)
            lost[s] = true;
          break;
        case 3:  // replace in place
          ASSERT_EQ(::mmap(at, slot_bytes, PROT_READ | PROT_WRITE, flags | MAP_FIXED, -1, 0), at);
          break;
      }
      if (!lost[s]) stamp(s);
      ++replacements;
      lock.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(rng() % 200));
    }
  };

  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) threads.emplace_back(acquirer, t + 1);
  std::thread mover(remapper);
  mover.join();
  done.store(true);
  for (auto& t : threads) t.join();

  EXPECT_EQ(stale.load(), 0) << "a hit returned a registration of replaced memory";
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(acquisitions.load(), 1000u);
  EXPECT_GT(replacements.load(), 400);
  auto stats = cache_->stats();
  EXPECT_GT(stats.hits, 0u);
  EXPECT_GT(stats.invalidations, 0u);
  expectEveryRegistrationReturned();
  for (int s = 0; s < kSlots; ++s) {
    if (!lost[s]) ::munmap(base + s * slot_bytes, slot_bytes);  // a lost slot is someone else's now
  }
  region.forget();
}

// ---------------------------------------------------------------------------
// UnmapMonitor on its own: which events arrive, and faults never hang.

class UnmapMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto monitor = UnmapMonitor::create();
    if (!monitor.ok()) GTEST_SKIP() << monitor.error().toString();
    monitor_ = std::move(*monitor);
  }
  std::vector<AddressSpaceEvent> drain() {
    monitor_->waitPublished(monitor_->readsStarted());
    std::vector<AddressSpaceEvent> events;
    monitor_->consume([&](const AddressSpaceEvent& e) { events.push_back(e); });
    return events;
  }
  std::unique_ptr<UnmapMonitor> monitor_;
};

TEST_F(UnmapMonitorTest, ReportsUnmapRemoveAndRemap) {
  Mapping m(8 * kPage);
  Mapping target(2 * kPage);
  ASSERT_TRUE(m.ok() && target.ok());
  const auto base = reinterpret_cast<uintptr_t>(m.data());
  ASSERT_TRUE(monitor_->watch(base, 8 * kPage).ok());

  ASSERT_EQ(::madvise(m.data(), kPage, MADV_DONTNEED), 0);
  auto events = drain();  // the madvise returned: its event was read already
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, AddressSpaceEvent::Kind::kRemove);
  EXPECT_EQ(events[0].begin, base);
  EXPECT_EQ(events[0].end, base + kPage);

  ASSERT_EQ(::munmap(m.data() + 2 * kPage, kPage), 0);
  events = drain();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, AddressSpaceEvent::Kind::kUnmap);
  EXPECT_EQ(events[0].begin, base + 2 * kPage);
  EXPECT_EQ(events[0].end, base + 3 * kPage);

  void* moved = ::mremap(m.data() + 4 * kPage, 2 * kPage, 2 * kPage, MREMAP_MAYMOVE | MREMAP_FIXED,
                         target.data());
  ASSERT_EQ(moved, target.data());
  events = drain();
  bool remap = false;
  for (const auto& e : events) {
    if (e.kind == AddressSpaceEvent::Kind::kRemap) {
      remap = true;
      EXPECT_EQ(e.begin, base + 4 * kPage);
      EXPECT_EQ(e.end, base + 6 * kPage);
      EXPECT_EQ(e.remap_to, reinterpret_cast<uintptr_t>(target.data()));
    }
  }
  EXPECT_TRUE(remap);
  // Unwatched memory produces nothing.
  ASSERT_TRUE(monitor_->unwatch(base + 6 * kPage, 2 * kPage).ok());
  ASSERT_EQ(::madvise(m.data() + 6 * kPage, kPage, MADV_DONTNEED), 0);
  EXPECT_TRUE(drain().empty());
  auto c = monitor_->counters();
  EXPECT_EQ(c.unmap_events + c.remove_events + c.remap_events >= 3, true);
}

TEST_F(UnmapMonitorTest, FaultOnAWatchedMissingPageIsAnsweredNotHung) {
  // Fresh, never-touched memory: every page is missing, so a touch faults
  // into the monitor. Without fault handling this thread would block forever.
  const size_t length = 4 * kPage;
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  ASSERT_TRUE(monitor_->watch(reinterpret_cast<uintptr_t>(p), length).ok());
  auto toucher = std::async(std::launch::async, [p, length] {
    auto* bytes = static_cast<volatile char*>(p);
    int sum = 0;
    for (size_t off = 0; off < length; off += kPage) sum += bytes[off];  // read faults
    bytes[kPage + 1] = 3;                                                // write after a zero page
    return sum + bytes[kPage + 1];
  });
  const bool finished = toucher.wait_for(5s) == std::future_status::ready;
  if (!finished) monitor_.reset();  // closing the fd wakes the thread so the test can end
  ASSERT_TRUE(finished) << "a fault on a watched page hung";
  EXPECT_EQ(toucher.get(), 3);
  // The monitor counts a fault after the ioctl that woke the toucher: the
  // last count can trail the toucher's return by a moment.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (monitor_->counters().faults_resolved < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_GE(monitor_->counters().faults_resolved, 4u);
  ::munmap(p, length);
}

TEST_F(UnmapMonitorTest, FreeOfAnMmappedMallocBlockIsAnUnmap) {
#if defined(ZCIO_TEST_ASAN)
  GTEST_SKIP() << "ASan's allocator quarantines freed blocks instead of unmapping them";
#else
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  const size_t size = 8 << 20;
  char* block = static_cast<char*>(std::malloc(size));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, size);
  const uintptr_t begin = reinterpret_cast<uintptr_t>(block) & ~(kPage - 1);
  ASSERT_TRUE(monitor_->watch(begin, kPage).ok());
  std::free(block);
  auto events = drain();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].kind, AddressSpaceEvent::Kind::kUnmap);
  EXPECT_LE(events[0].begin, begin);
  EXPECT_GE(events[0].end, begin + kPage);
#endif
}

TEST_F(UnmapMonitorTest, QueueOverflowIsReportedNotBlocking) {
  monitor_.reset();
  auto monitor = UnmapMonitor::create(1);  // rounded up to 64 slots
  ASSERT_TRUE(monitor.ok());
  monitor_ = std::move(*monitor);
  Mapping m(200 * kPage);
  ASSERT_TRUE(m.ok());
  const auto base = reinterpret_cast<uintptr_t>(m.data());
  ASSERT_TRUE(monitor_->watch(base, 200 * kPage).ok());
  for (int i = 0; i < 100; ++i)
    ASSERT_EQ(::madvise(m.data() + 2 * i * kPage, kPage, MADV_DONTNEED), 0);
  auto events = drain();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().kind, AddressSpaceEvent::Kind::kOverflow);
  EXPECT_GT(monitor_->counters().overflows, 0u);
}

}  // namespace
}  // namespace zcio::iobuf
