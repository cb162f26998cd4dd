// RegistrationCache costs: a hit with 10,000 cached regions (the hot path of
// every direct RDMA transfer into already-seen memory) and a miss, both with
// a fake registrar so that only the cache's own work is measured (add the
// verbs registrar's ibv_reg_mr cost, ~25-70 us on rxe, to a miss).
//
//   zcio_registration_cache_benchmark --benchmark_repetitions=10
//     with --benchmark_report_aggregates_only=true for medians
#include <benchmark/benchmark.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "iobuf/registration_cache.h"

namespace {

using namespace zcio;
using namespace zcio::iobuf;

constexpr size_t kRegions = 10000;
constexpr uint32_t kAccess = kLocalWrite | kRemoteWrite;
const size_t kPage = static_cast<size_t>(::sysconf(_SC_PAGESIZE));

class FakeRegistrar final : public MemoryRegistrar {
 public:
  Result<RegistrationKeys> registerRange(void*, size_t, uint32_t) override {
    uint64_t id = next_.fetch_add(1, std::memory_order_relaxed) + 1;
    return RegistrationKeys{static_cast<uint32_t>(id), static_cast<uint32_t>(id), id};
  }
  Result<void> deregister(const RegistrationKeys&) override { return okResult(); }

 private:
  std::atomic<uint64_t> next_{0};
};

// One page per region, 10,000 of them, in one mapping.
struct Memory {
  Memory() {
    void* p = ::mmap(nullptr, kRegions * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base = static_cast<char*>(p);
    // A fixed pseudo-random visiting order: lookups do not walk the map in order.
    order.resize(1 << 16);
    uint64_t x = 88172645463325252ull;
    for (auto& o : order) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      o = static_cast<uint32_t>(x % kRegions);
    }
  }
  char* region(size_t i) const { return base + i * kPage; }
  char* base = nullptr;
  std::vector<uint32_t> order;
};

Memory& memory() {
  static Memory m;
  return m;
}

// Separate memory for the miss benchmarks: a range can be watched by one
// userfaultfd only (a second cache over the same pages gets EBUSY and does not
// cache them).
Memory& missMemory() {
  static Memory m;
  return m;
}

// A cache with every region cached (one entry each) and unreferenced.
RegistrationCache& warmCache() {
  static FakeRegistrar registrar;
  static RegistrationCache* cache = [] {
    RegistrationCache::Options options;
    options.max_entries = 2 * kRegions;
    auto* c = new RegistrationCache(registrar, options);
    if (!c->caching()) {
      std::fprintf(stderr, "registration cache not caching: %s\n", c->fallbackReason().c_str());
    }
    for (size_t i = 0; i < kRegions; ++i) {
      auto ref = c->acquire(memory().region(i), kPage, kAccess);
      if (!ref.ok()) std::abort();
    }
    return c;
  }();
  return *cache;
}

// acquire() + release of a hit: what a request pays per iov segment.
void BM_HitAcquireRelease(benchmark::State& state) {
  RegistrationCache& cache = warmCache();
  const Memory& m = memory();
  const auto before = cache.stats();
  size_t i = 0;
  for (auto _ : state) {
    const size_t r = m.order[i++ & (m.order.size() - 1)];
    auto ref = cache.acquire(m.region(r) + 64, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
  const auto after = cache.stats();
  state.counters["entries"] = static_cast<double>(after.entries);
  state.counters["misses"] = static_cast<double>(after.misses - before.misses);
}
BENCHMARK(BM_HitAcquireRelease);

// The same buffer over and over (everything in L1): the floor of a hit.
void BM_HitSameBuffer(benchmark::State& state) {
  RegistrationCache& cache = warmCache();
  char* buffer = memory().region(1234) + 64;
  for (auto _ : state) {
    auto ref = cache.acquire(buffer, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
}
BENCHMARK(BM_HitSameBuffer);

// A buffer in the middle of a larger cached entry: no exact-begin index hit,
// so this is the bounded walk of the address map.
void BM_HitInsideLargerEntry(benchmark::State& state) {
  RegistrationCache& cache = warmCache();
  static char* large = [&] {
    void* p = ::mmap(nullptr, 64 * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED || !cache.acquire(p, 64 * kPage, kAccess).ok()) std::abort();
    return static_cast<char*>(p);
  }();
  const auto before = cache.stats();
  size_t i = 0;
  for (auto _ : state) {
    auto ref = cache.acquire(large + (1 + i++ % 60) * kPage + 64, kPage, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
  state.counters["misses"] = static_cast<double>(cache.stats().misses - before.misses);
}
BENCHMARK(BM_HitInsideLargerEntry);

// acquire() alone (references are dropped outside the timed region).
void BM_HitAcquireOnly(benchmark::State& state) {
  RegistrationCache& cache = warmCache();
  const Memory& m = memory();
  std::vector<RegistrationRef> held;
  held.reserve(4096);
  size_t i = 0;
  for (auto _ : state) {
    const size_t r = m.order[i++ & (m.order.size() - 1)];
    auto ref = cache.acquire(m.region(r) + 64, 1024, kAccess);
    held.push_back(std::move(*ref));
    if (held.size() == 4096) {
      state.PauseTiming();
      held.clear();
      state.ResumeTiming();
    }
  }
}
BENCHMARK(BM_HitAcquireOnly);

// Several threads hitting the same cache (one mutex).
void BM_HitAcquireReleaseThreads(benchmark::State& state) {
  RegistrationCache& cache = warmCache();
  const Memory& m = memory();
  size_t i = static_cast<size_t>(state.thread_index()) * 7919;
  for (auto _ : state) {
    const size_t r = m.order[i++ & (m.order.size() - 1)];
    auto ref = cache.acquire(m.region(r) + 64, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
}
BENCHMARK(BM_HitAcquireReleaseThreads)->Threads(2)->Threads(4)->UseRealTime();

// A miss: watch + register + insert, and the eviction (unwatch + deregister)
// it forces on a small cache cycling through 10,000 regions.
void BM_MissWithEviction(benchmark::State& state) {
  FakeRegistrar registrar;
  RegistrationCache::Options options;
  options.max_entries = 64;
  RegistrationCache cache(registrar, options);
  const Memory& m = missMemory();
  size_t i = 0;
  for (auto _ : state) {
    auto ref = cache.acquire(m.region(i++ % kRegions) + 64, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
  auto stats = cache.stats();
  state.counters["hit_ratio"] =
      static_cast<double>(stats.hits) / static_cast<double>(stats.hits + stats.misses);
  state.counters["uncached"] = static_cast<double>(stats.uncached);
  state.counters["evictions"] = static_cast<double>(stats.evictions);
}
BENCHMARK(BM_MissWithEviction);

// Fallback (no userfaultfd): every acquire registers and every release deregisters.
void BM_FallbackRegisterDeregister(benchmark::State& state) {
  FakeRegistrar registrar;
  RegistrationCache::Options options;
  options.monitor_unmaps = false;
  RegistrationCache cache(registrar, options);
  const Memory& m = missMemory();
  size_t i = 0;
  for (auto _ : state) {
    auto ref = cache.acquire(m.region(i++ % kRegions) + 64, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
}
BENCHMARK(BM_FallbackRegisterDeregister);

}  // namespace

BENCHMARK_MAIN();
