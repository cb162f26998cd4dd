// A randomized model test of the caching layers: two clients on one file,
// A with the io-cache and write-behind on, B with both off, run thousands of
// random interleaved regular/direct reads and writes (random offsets, sizes
// and iov shapes) and every result is checked against an in-memory model;
// after every fsync the whole file is compared with it.
//
// The contract being modelled: A sees its own writes at once (overlapping
// reads send staged data first; writes purge its cache); write-behind data
// is visible to others after A's fsync (so the test fsyncs A before B
// touches the file); B's writes reach A's direct reads at once, and A's
// regular reads once the page was purged (a write or direct read by A over
// it). Bytes of pages B wrote since A last purged them may be stale in A's
// regular reads and are the only ones not compared.
#include <fcntl.h>

#include <random>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr uint64_t KiB = 1024;
constexpr uint64_t kPage = 4 * KiB;
constexpr uint64_t kFileSize = 96 * KiB;

class CacheModel : public ServerFixture {};

TEST_F(CacheModel, RandomInterleavedRegularAndDirectIoFromTwoClientsMatchesTheModel) {
  std::mt19937_64 rng(testSeed(0xcace0de1));
  std::string model = test::writeRandomFile(dir_->file("m"), kFileSize, rng());
  fops::ClientOptions options;
  options.io_cache_bytes = 64 * KiB;  // smaller than the file: LRU evictions
  options.write_behind = true;
  options.write_behind_aggregate_bytes = 16 * KiB;
  options.write_behind_delay = std::chrono::milliseconds(2);
  auto a = connect(options);
  ASSERT_TRUE(a);
  fops::Client& b = *client_;
  auto fa = a->open("m", O_RDWR);
  auto fb = b.open("m", O_RDWR);
  ASSERT_TRUE(fa && fb);
  std::vector<bool> stale(kFileSize / kPage, false);  // pages A may hold stale
  auto touchPages = [&](uint64_t off, uint64_t len, bool value) {
    if (len == 0) return;
    for (uint64_t p = off / kPage; p <= (off + len - 1) / kPage && p < stale.size(); ++p) {
      stale[p] = value;
    }
  };
  uint64_t last_end = 0;
  auto pickRange = [&](uint64_t max_len) {
    uint64_t off;
    if (rng() % 3 == 0 && last_end < kFileSize) {
      off = last_end;  // adjacent to the last write: collapsible
    } else {
      off = rng() % kFileSize;
    }
    uint64_t len = rng() % 4 == 0 ? 1 + rng() % max_len : 1 + rng() % 2048;
    len = std::min(len, kFileSize - off);
    return std::pair{off, len};
  };
  std::pair<uint64_t, uint64_t> last_read{0, 4 * KiB};
  int compares = 0;
  auto fsyncAndCompare = [&](const std::string& when) {
    auto s = a->fsync(*fa);
    ASSERT_TRUE(s) << when << ": " << s.error().toString();
    std::string got(kFileSize, '\0');
    iovec v{got.data(), got.size()};
    auto n = b.preadvDirect(*fb, {&v, 1}, 0);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, kFileSize);
    ASSERT_TRUE(got == model) << "file differs from the model after fsync (" << when << ")";
    ++compares;
  };

  const int kOps = 3000;
  for (int i = 0; i < kOps; ++i) {
    int op = static_cast<int>(rng() % 100);
    std::string what = "op " + std::to_string(i);
    if (op < 40) {  // A writes: regular 30%, direct 10%
      bool direct = op >= 30;
      auto [off, len] = pickRange(20 * KiB);
      std::string data = randomBytes(len, rng);
      ScatterBuffer src(len, 1 + rng() % 4, rng);
      src.fill(data);
      auto w = direct ? a->pwritevDirect(*fa, src.iov(), off) : a->pwritev(*fa, src.iov(), off);
      ASSERT_TRUE(w) << what << ": " << w.error().toString();
      ASSERT_EQ(*w, len) << what;
      model.replace(off, len, data);
      touchPages(off, len, false);
      last_end = off + len;
    } else if (op < 70) {  // A reads: regular 20%, direct 10%
      bool direct = op >= 60;
      uint64_t off = rng() % (kFileSize + 100);
      uint64_t len = rng() % 4 == 0 ? 1 + rng() % (32 * KiB) : 1 + rng() % 9000;
      if (!direct && rng() % 2 == 0) {
        // A re-read of the whole pages the last read covered: served by the
        // cache unless something purged or evicted them since.
        uint64_t first = (last_read.first + kPage - 1) / kPage * kPage;
        uint64_t end = (last_read.first + last_read.second) / kPage * kPage;
        if (end > first) {
          off = first + rng() % (end - first);
          len = 1 + rng() % (end - off);
        }
      }
      last_read = {off, len};
      ScatterBuffer buf(len, 1 + rng() % 5, rng);
      auto r = direct ? a->preadvDirect(*fa, buf.iov(), off) : a->preadv(*fa, buf.iov(), off);
      ASSERT_TRUE(r) << what << ": " << r.error().toString();
      uint64_t want = off >= kFileSize ? 0 : std::min(len, kFileSize - off);
      ASSERT_EQ(*r, want) << what;
      std::string expected = want ? model.substr(off, want) : std::string();
      if (!direct) {
        // Bytes of pages B changed behind A's cache may be stale: take them
        // from the result (they are not compared).
        std::string got = buf.gather(want);
        for (uint64_t k = 0; k < want; ++k) {
          if (stale[(off + k) / kPage]) expected[k] = got[k];
        }
      } else {
        touchPages(off, want, false);
      }
      auto bad = buf.check(expected);
      ASSERT_FALSE(bad) << what << (direct ? " direct" : " regular") << " read at " << off << "+"
                        << len << ": " << *bad;
    } else if (op < 90) {  // B, after A's fsync (write-behind's visibility point)
      fsyncAndCompare(what);
      ASSERT_FALSE(HasFatalFailure());
      bool direct = rng() % 2 == 0;
      if (rng() % 3 == 0) {
        uint64_t off = rng() % kFileSize;
        uint64_t len = 1 + rng() % std::min<uint64_t>(16 * KiB, kFileSize - off);
        ScatterBuffer buf(len, 1 + rng() % 4, rng);
        auto r = direct ? b.preadvDirect(*fb, buf.iov(), off) : b.preadv(*fb, buf.iov(), off);
        ASSERT_TRUE(r) << what << ": " << r.error().toString();
        auto bad = buf.check(model.substr(off, len));
        ASSERT_FALSE(bad) << what << ": B read: " << *bad;
      } else {
        auto [off, len] = pickRange(16 * KiB);
        std::string data = randomBytes(len, rng);
        ScatterBuffer src(len, 1 + rng() % 4, rng);
        src.fill(data);
        auto w = direct ? b.pwritevDirect(*fb, src.iov(), off) : b.pwritev(*fb, src.iov(), off);
        ASSERT_TRUE(w) << what << ": " << w.error().toString();
        model.replace(off, len, data);
        touchPages(off, len, true);
      }
    } else {
      fsyncAndCompare(what);
      ASSERT_FALSE(HasFatalFailure());
    }
  }
  fsyncAndCompare("end");
  ASSERT_FALSE(HasFatalFailure());
  auto s = a->stats();
  std::printf(
      "[ model    ] %d compares; A: hits %llu misses %llu purges %llu collapsed %llu "
      "flushes %llu\n",
      compares, static_cast<unsigned long long>(s.io_cache_hits),
      static_cast<unsigned long long>(s.io_cache_misses),
      static_cast<unsigned long long>(s.io_cache_purges),
      static_cast<unsigned long long>(s.writes_collapsed),
      static_cast<unsigned long long>(s.write_behind_flushes));
  EXPECT_GT(s.io_cache_hits, 0u);
  EXPECT_GT(s.writes_collapsed, 0u);
  EXPECT_GT(s.io_cache_purges, 0u);
  ASSERT_TRUE(a->close(*fa));
  ASSERT_TRUE(b.close(*fb));
  EXPECT_EQ(test::readLocalFile(dir_->file("m")), model);
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
