// Memory registration on a real verbs device (rxe in the soft-roce-ci guest):
//  - RegDereg/<pages>/<bytes>: ibv_reg_mr + ibv_dereg_mr of one buffer, 4 KiB
//    .. 1 GiB, on normal 4 KiB pages (MADV_NOHUGEPAGE), hugetlbfs 2 MiB pages
//    (MAP_HUGETLB) and transparent huge pages (madvise); the huge_fraction
//    counter is the share that AnonHugePages grew by. Every page is touched once before the
//    first registration, so the time is pinning and mapping, not faulting in.
//  - CacheHit / CacheMiss: iobuf::RegistrationCache over the real
//    VerbsRegistrar, a hit with 10,000 cached one-page regions, a miss that
//    registers and evicts.
//  - OneMiB/*: a 1 MiB buffer used once per iteration: registered and
//    deregistered around each use (per call), pinned once with acquire/release
//    per use (pre-registered), and memcpy of 1 MiB (what the regular path pays
//    instead of registering).
// Times are wall clock: a registration blocks the caller in the kernel.
// Without a device (or with a device that fails to open) every benchmark is
// skipped with the reason and the binary exits 0.
//
//   zcio_verbs_registration_benchmark --benchmark_repetitions=5
//   ZCIO_BENCH_DEVICE=rxe0 picks the device (default: the first one).
#include <benchmark/benchmark.h>
#include <infiniband/verbs.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "iobuf/registration_cache.h"
#include "verbs/owners.h"
#include "verbs/registrar.h"

namespace {

using namespace zcio;

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kHugePage = 2 * kMiB;
constexpr size_t kRegions = 10000;
// What a readv reply buffer needs (the server RDMA-WRITEs into it).
constexpr uint32_t kAccess = iobuf::kLocalWrite | iobuf::kRemoteWrite;
const size_t kPage = static_cast<size_t>(::sysconf(_SC_PAGESIZE));

std::string errnoText(int code) {
  return std::to_string(code) + " " + std::strerror(code);
}

// The device and one PD, opened once; `error` says why not when empty.
struct Device {
  Device() {
    int count = 0;
    ibv_device** list = ibv_get_device_list(&count);
    if (list == nullptr || count == 0) {
      error = list == nullptr ? "ibv_get_device_list: " + errnoText(errno) : "no verbs device";
      if (list != nullptr) ibv_free_device_list(list);
      return;
    }
    const char* wanted = std::getenv("ZCIO_BENCH_DEVICE");
    ibv_device* chosen = wanted == nullptr ? list[0] : nullptr;
    for (int i = 0; i < count && chosen == nullptr; ++i) {
      if (std::strcmp(ibv_get_device_name(list[i]), wanted) == 0) chosen = list[i];
    }
    if (chosen == nullptr) {
      error = std::string("ZCIO_BENCH_DEVICE=") + wanted + " not found";
    } else {
      name = ibv_get_device_name(chosen);
      context.reset(ibv_open_device(chosen));
      if (!context) error = "ibv_open_device(" + name + "): " + errnoText(errno);
    }
    ibv_free_device_list(list);
    if (!context) return;
    pd.reset(ibv_alloc_pd(context.get()));
    if (!pd) error = "ibv_alloc_pd on " + name + ": " + errnoText(errno);
  }
  // Declared parent first: the PD dies before the context.
  std::unique_ptr<ibv_context, decltype(&ibv_close_device)> context{nullptr, &ibv_close_device};
  verbs::ProtectionDomain pd;
  std::string name;
  std::string error;
};

Device& device() {
  static Device d;
  return d;
}

// True when the device is usable; otherwise skips the benchmark with the reason.
bool haveDevice(benchmark::State& state) {
  if (!device().error.empty()) {
    state.SkipWithError(("no RDMA device: " + device().error).c_str());
    return false;
  }
  return true;
}

enum class Pages { kNormal, kHugetlb, kThp };

const char* pagesName(Pages pages) {
  switch (pages) {
    case Pages::kNormal:
      return "normal";
    case Pages::kHugetlb:
      return "hugetlb";
    case Pages::kThp:
      return "thp";
  }
  return "?";
}

// One field of /proc/meminfo or /proc/self/smaps_rollup, in kB; -1 if absent.
long procKb(const char* file, const std::string& field) {
  std::ifstream in(file);
  std::string line;
  const std::string key = field + ":";
  while (std::getline(in, line)) {  // smaps_rollup starts with an address-range line
    if (line.compare(0, key.size(), key) == 0) return std::atol(line.c_str() + key.size());
  }
  return -1;
}

// The buffer under test. Only one is kept (up to 1 GiB, in a 2 GiB guest), and
// it is kept across a benchmark's repetitions so pages are touched once.
struct Buffer {
  Pages pages = Pages::kNormal;
  size_t size = 0;
  char* base = nullptr;  // mapping
  size_t mapped = 0;
  char* data = nullptr;  // aligned start
  double huge_fraction = 0;
  std::string error;

  ~Buffer() { unmap(); }
  void unmap() {
    if (base != nullptr) ::munmap(base, mapped);
    base = data = nullptr;
  }
  void map(Pages want, size_t bytes) {
    if (want == pages && bytes == size && (data != nullptr || !error.empty())) return;
    unmap();
    pages = want;
    size = bytes;
    error.clear();
    huge_fraction = 0;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    // THP needs a 2 MiB-aligned range: map one huge page more and align.
    mapped = want == Pages::kThp ? bytes + kHugePage : bytes;
    if (want == Pages::kHugetlb) flags |= MAP_HUGETLB;  // the default size, 2 MiB on x86-64
    const long anon_huge_before = procKb("/proc/self/smaps_rollup", "AnonHugePages");
    void* p = ::mmap(nullptr, mapped, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
      int code = errno;
      error =
          "mmap " + std::to_string(bytes) + " bytes (" + pagesName(want) + "): " + errnoText(code);
      if (want == Pages::kHugetlb) {
        error += "; HugePages_Free " + std::to_string(procKb("/proc/meminfo", "HugePages_Free")) +
                 " x 2 MiB, need " + std::to_string(bytes / kHugePage) +
                 " (raise /proc/sys/vm/nr_hugepages)";
      }
      return;
    }
    base = static_cast<char*>(p);
    data = base;
    if (want == Pages::kThp) {
      auto aligned = (reinterpret_cast<uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1);
      data = reinterpret_cast<char*>(aligned);
      if (::madvise(data, bytes, MADV_HUGEPAGE) != 0) {
        error = "madvise(MADV_HUGEPAGE): " + errnoText(errno) +
                " (transparent huge pages not in this kernel?)";
        unmap();
        return;
      }
    }
    // With THP "always" a large normal mapping would get huge pages too; keep
    // it at 4 KiB (EINVAL without THP in the kernel: nothing to turn off).
    if (want == Pages::kNormal) (void)::madvise(data, bytes, MADV_NOHUGEPAGE);
    std::memset(data, 1, bytes);  // fault every page in now, outside the timing
    const long gained = procKb("/proc/self/smaps_rollup", "AnonHugePages") - anon_huge_before;
    huge_fraction = want == Pages::kHugetlb
                        ? 1
                        : static_cast<double>(gained) * 1024 / static_cast<double>(bytes);
    if (want == Pages::kThp) {
      if (gained <= 0) {
        error =
            "madvise(MADV_HUGEPAGE) gave no huge pages (AnonHugePages did not grow; "
            "/sys/kernel/mm/transparent_hugepage/enabled is 'never' or memory is fragmented)";
        unmap();
      }
    }
  }
};

Buffer& buffer() {
  static Buffer b;
  return b;
}

// ibv_reg_mr + ibv_dereg_mr of `size` bytes on `pages`.
void BM_RegDereg(benchmark::State& state, Pages pages, size_t size) {
  if (!haveDevice(state)) return;
  Buffer& b = buffer();
  b.map(pages, size);
  if (!b.error.empty()) {
    state.SkipWithError(b.error.c_str());
    return;
  }
  const int access = verbs::toIbvAccess(kAccess);
  for (auto _ : state) {
    ibv_mr* mr = ibv_reg_mr(device().pd.get(), b.data, size, access);
    if (mr == nullptr) {
      state.SkipWithError(("ibv_reg_mr of " + std::to_string(size) + " bytes on " + device().name +
                           ": " + errnoText(errno))
                              .c_str());
      break;
    }
    int rc = ibv_dereg_mr(mr);  // returns the errno value
    if (rc != 0) {
      state.SkipWithError(("ibv_dereg_mr: " + errnoText(rc)).c_str());
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(size));
  state.counters["bytes"] = static_cast<double>(size);
  state.counters["huge_fraction"] = b.huge_fraction;
}

// Page-sized regions in one populated mapping, for the cache benchmarks.
struct Regions {
  explicit Regions(size_t count) : count(count) {
    void* p = ::mmap(nullptr, count * kPage, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) std::abort();
    base = static_cast<char*>(p);
    // A fixed pseudo-random visiting order, so hits do not walk the map in order.
    order.resize(1 << 16);
    uint64_t x = 88172645463325252ull;
    for (auto& o : order) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      o = static_cast<uint32_t>(x % count);
    }
  }
  char* region(size_t i) const { return base + i * kPage; }
  size_t count;
  char* base = nullptr;
  std::vector<uint32_t> order;
};

verbs::VerbsRegistrar& registrar() {
  static verbs::VerbsRegistrar r(device().pd.get());
  return r;
}

// A cache holding kRegions one-page registrations, all unreferenced; or the
// reason it could not be built. One cache per memory: a page can be watched
// by one userfaultfd only.
struct HitSetup {
  HitSetup() : regions(kRegions) {
    iobuf::RegistrationCache::Options options;
    options.max_entries = 2 * kRegions;
    cache = std::make_unique<iobuf::RegistrationCache>(registrar(), options);
    if (!cache->caching()) {
      error = "registration cache not caching: " + cache->fallbackReason();
      return;
    }
    for (size_t i = 0; i < kRegions && error.empty(); ++i) {
      auto ref = cache->acquire(regions.region(i), kPage, kAccess);
      if (!ref.ok()) error = "warming the cache: " + ref.error().toString();
    }
  }
  Regions regions;
  std::unique_ptr<iobuf::RegistrationCache> cache;
  std::string error;
};

HitSetup& hitSetup() {
  static HitSetup s;
  return s;
}

// acquire() + release of a cached region: what a request pays per iov segment.
void BM_CacheHit(benchmark::State& state) {
  if (!haveDevice(state)) return;
  buffer().unmap();  // the last RegDereg buffer may hold 1 GiB
  HitSetup& s = hitSetup();
  if (!s.error.empty()) {
    state.SkipWithError(s.error.c_str());
    return;
  }
  const auto before = s.cache->stats();
  size_t i = 0;
  for (auto _ : state) {
    const size_t r = s.regions.order[i++ & (s.regions.order.size() - 1)];
    auto ref = s.cache->acquire(s.regions.region(r) + 64, 1024, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
  const auto after = s.cache->stats();
  state.counters["entries"] = static_cast<double>(after.entries);
  state.counters["misses"] = static_cast<double>(after.misses - before.misses);
}

// A miss on a one-page region: watch + ibv_reg_mr + insert, plus the eviction
// (unwatch + ibv_dereg_mr) it forces in a 64-entry cache cycling through
// 10,000 regions.
void BM_CacheMiss(benchmark::State& state) {
  if (!haveDevice(state)) return;
  static Regions regions(kRegions);
  iobuf::RegistrationCache::Options options;
  options.max_entries = 64;
  iobuf::RegistrationCache cache(registrar(), options);
  if (!cache.caching()) {
    state.SkipWithError(("registration cache not caching: " + cache.fallbackReason()).c_str());
    return;
  }
  size_t i = 0;
  for (auto _ : state) {
    auto ref = cache.acquire(regions.region(i++ % kRegions) + 64, 1024, kAccess);
    if (!ref.ok()) {
      state.SkipWithError(ref.error().toString().c_str());
      break;
    }
  }
  const auto stats = cache.stats();
  state.counters["hit_ratio"] =
      static_cast<double>(stats.hits) / static_cast<double>(stats.hits + stats.misses);
  state.counters["evictions"] = static_cast<double>(stats.evictions);
}

// A populated 1 MiB buffer for the per-use comparison.
char* oneMiB() {
  static char* p = [] {
    void* m = ::mmap(nullptr, kMiB, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (m == MAP_FAILED) std::abort();
    return static_cast<char*>(m);
  }();
  return p;
}

// Per call: register, use, deregister (what a transport without a cache does).
void BM_OneMiBPerCall(benchmark::State& state) {
  if (!haveDevice(state)) return;
  char* buf = oneMiB();
  for (auto _ : state) {
    auto keys = registrar().registerRange(buf, kMiB, kAccess);
    if (!keys.ok()) {
      state.SkipWithError(keys.error().toString().c_str());
      break;
    }
    benchmark::DoNotOptimize(keys->rkey);
    if (auto done = registrar().deregister(*keys); !done.ok()) {
      state.SkipWithError(done.error().toString().c_str());
      break;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kMiB));
}

// Pre-registered: pinned once (outside the timing), acquire/release per use.
void BM_OneMiBPreRegistered(benchmark::State& state) {
  if (!haveDevice(state)) return;
  char* buf = oneMiB();
  iobuf::RegistrationCache cache(registrar());
  if (auto pinned = cache.pin(buf, kMiB, kAccess); !pinned.ok()) {
    state.SkipWithError(("pin: " + pinned.error().toString()).c_str());
    return;
  }
  for (auto _ : state) {
    auto ref = cache.acquire(buf, kMiB, kAccess);
    benchmark::DoNotOptimize(ref->keys().rkey);
  }
  state.counters["misses"] = static_cast<double>(cache.stats().misses);
  (void)cache.unpin(buf, kMiB);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kMiB));
}

// The copy the regular path makes instead of registering (1 MiB memcpy).
void BM_OneMiBCopy(benchmark::State& state) {
  static std::vector<char> dst(kMiB);
  char* src = oneMiB();
  for (auto _ : state) {
    std::memcpy(dst.data(), src, kMiB);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kMiB));
}

std::string sizeName(size_t bytes) {
  if (bytes >= kMiB * 1024) return std::to_string(bytes / (kMiB * 1024)) + "G";
  if (bytes >= kMiB) return std::to_string(bytes / kMiB) + "M";
  return std::to_string(bytes / kKiB) + "K";
}

void addStatistics(benchmark::internal::Benchmark* b) {
  b->ComputeStatistics(
      "min", [](const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); });
  b->ComputeStatistics(
      "max", [](const std::vector<double>& v) { return *std::max_element(v.begin(), v.end()); });
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

void registerAll() {
  // Powers of 4; huge pages from 4 MiB (two 2 MiB pages) up. A short minimum
  // time bounds the run: one 1 GiB registration alone exceeds it on rxe, so
  // each repetition there is a single iteration.
  for (Pages pages : {Pages::kNormal, Pages::kThp, Pages::kHugetlb}) {
    for (size_t size = 4 * kKiB; size <= 1024 * kMiB; size *= 4) {
      if (pages != Pages::kNormal && size < 2 * kHugePage) continue;
      std::string name = std::string("RegDereg/") + pagesName(pages) + "/" + sizeName(size);
      auto* b = benchmark::RegisterBenchmark(name.c_str(), BM_RegDereg, pages, size);
      addStatistics(b->MinTime(0.1));
    }
  }
  // The 1 MiB comparison runs before the cache benchmarks, so its ibv_reg_mr
  // calls see the same process as RegDereg's (not 10,000 live registrations
  // and the VMAs their watches split).
  addStatistics(benchmark::RegisterBenchmark("OneMiB/per_call", BM_OneMiBPerCall)->MinTime(0.1));
  addStatistics(
      benchmark::RegisterBenchmark("OneMiB/pre_registered", BM_OneMiBPreRegistered)->MinTime(0.1));
  addStatistics(benchmark::RegisterBenchmark("OneMiB/memcpy", BM_OneMiBCopy)->MinTime(0.1));
  addStatistics(benchmark::RegisterBenchmark("CacheMiss/4K", BM_CacheMiss)->MinTime(0.1));
  addStatistics(benchmark::RegisterBenchmark("CacheHit/10000regions", BM_CacheHit)->MinTime(0.1));
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  registerAll();
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
