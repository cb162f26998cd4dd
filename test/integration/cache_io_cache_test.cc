// The io-cache's rules against a real server: regular reads fill and hit it,
// a direct read bypasses it (and still copies 0 bytes) and purges what it
// overlaps, any write purges what it overlaps, an attribute change seen in a
// reply drops the file's pages, and the byte cap evicts in LRU order.
#include <fcntl.h>

#include <random>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr uint64_t KiB = 1024;

class CacheIoCache : public ServerFixture {
 protected:
  std::unique_ptr<fops::Client> cachingClient(uint64_t bytes = 1024 * KiB) {
    fops::ClientOptions options;
    options.io_cache_bytes = bytes;
    return connect(options);
  }
};

std::string readRegular(fops::Client& c, fops::FileHandle fh, uint64_t offset, size_t n) {
  std::string out(n, '\0');
  iovec v{out.data(), n};
  auto r = c.preadv(fh, {&v, 1}, offset);
  EXPECT_TRUE(r) << r.error().toString();
  out.resize(r ? *r : 0);
  return out;
}

TEST_F(CacheIoCache, RegularReadsFillAndHitTheCacheAndCountersSayHow) {
  std::mt19937_64 rng(testSeed(0xcac40001));
  const std::string content = test::writeRandomFile(dir_->file("f"), 64 * KiB, rng());
  auto a = cachingClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  EXPECT_EQ(readRegular(*a, *fh, 0, 64 * KiB), content);
  auto s1 = a->stats();
  EXPECT_EQ(s1.io_cache_misses, 1u);
  EXPECT_EQ(s1.io_cache_hits, 0u);
  uint64_t requests = s1.requests;
  // Unaligned sub-ranges and scattered iovs inside the cached pages: hits,
  // no request sent.
  for (int i = 0; i < 20; ++i) {
    uint64_t off = rng() % (60 * KiB);
    size_t len = 1 + rng() % (64 * KiB - off);
    ScatterBuffer buf(len, 1 + rng() % 5, rng);
    auto r = a->preadv(*fh, buf.iov(), off);
    ASSERT_TRUE(r) << r.error().toString();
    ASSERT_EQ(*r, len);
    auto bad = buf.check(content.substr(off, len));
    ASSERT_FALSE(bad) << *bad;
  }
  auto s2 = a->stats();
  EXPECT_EQ(s2.io_cache_hits, 20u);
  EXPECT_EQ(s2.requests, requests) << "a cache hit sent a request";
  // A read crossing EOF is never served from the cache (EOF is the server's).
  EXPECT_EQ(readRegular(*a, *fh, 60 * KiB, 8 * KiB), content.substr(60 * KiB));
  EXPECT_EQ(a->stats().io_cache_misses, 2u);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheIoCache, DirectReadAfterCachedRegularReadOfChangedDataReturnsTheNewBytes) {
  std::mt19937_64 rng(testSeed(0xcac40002));
  const std::string old_bytes = test::writeRandomFile(dir_->file("f"), 64 * KiB, rng());
  auto a = cachingClient();
  ASSERT_TRUE(a);
  auto fa = a->open("f", O_RDONLY);
  ASSERT_TRUE(fa);
  ASSERT_EQ(readRegular(*a, *fa, 0, 64 * KiB), old_bytes);
  ASSERT_EQ(readRegular(*a, *fa, 0, 64 * KiB), old_bytes);
  ASSERT_EQ(a->stats().io_cache_hits, 1u);

  // Another client rewrites the middle (same size: no size change).
  auto fb = client_->open("f", O_RDWR);
  ASSERT_TRUE(fb);
  std::string fresh = randomBytes(20 * KiB, rng);
  iovec w{fresh.data(), fresh.size()};
  ASSERT_EQ(*client_->pwritevDirect(*fb, {&w, 1}, 10 * KiB), fresh.size());
  std::string expected = old_bytes;
  expected.replace(10 * KiB, fresh.size(), fresh);

  // The direct read goes to the server, copies nothing, and purges.
  uint64_t copied = a->stats().bytes_copied;
  uint64_t purges = a->stats().io_cache_purges;
  ScatterBuffer buf(64 * KiB, 3, rng);
  auto r = a->preadvDirect(*fa, buf.iov(), 0);
  ASSERT_TRUE(r) << r.error().toString();
  auto bad = buf.check(expected);
  ASSERT_FALSE(bad) << *bad;
  EXPECT_LE(a->stats().bytes_copied - copied, directCopyAllowance(64 * KiB));
  EXPECT_EQ(a->stats().io_cache_purges - purges, 16u);
  // ... so the regular read after it sees the new bytes too.
  EXPECT_EQ(readRegular(*a, *fa, 0, 64 * KiB), expected);
  ASSERT_TRUE(a->close(*fa));
  ASSERT_TRUE(client_->close(*fb));
  stopServerCleanly();
}

TEST_F(CacheIoCache, WritesPurgeTheOverlappedPagesRegularAndDirect) {
  std::mt19937_64 rng(testSeed(0xcac40003));
  std::string expected = test::writeRandomFile(dir_->file("f"), 64 * KiB, rng());
  auto a = cachingClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR);
  ASSERT_TRUE(fh);
  for (auto mode : {fops::IoMode::kRegular, fops::IoMode::kDirect}) {
    ASSERT_EQ(readRegular(*a, *fh, 0, 64 * KiB), expected);  // fills
    uint64_t off = 1000 + rng() % (40 * KiB);
    std::string data = randomBytes(1 + rng() % (16 * KiB), rng);
    ScatterBuffer src(data.size(), 1 + rng() % 4, rng);
    src.fill(data);
    auto w = mode == fops::IoMode::kDirect ? a->pwritevDirect(*fh, src.iov(), off)
                                           : a->pwritev(*fh, src.iov(), off);
    ASSERT_TRUE(w) << w.error().toString();
    expected.replace(off, data.size(), data);
    uint64_t hits = a->stats().io_cache_hits;
    EXPECT_EQ(readRegular(*a, *fh, 0, 64 * KiB), expected) << "stale page after a write";
    EXPECT_EQ(a->stats().io_cache_hits, hits) << "a read over purged pages hit";
  }
  EXPECT_GT(a->stats().io_cache_purges, 0u);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheIoCache, AnFstatShowingASizeOrMtimeChangeDropsTheFilesPages) {
  std::mt19937_64 rng(testSeed(0xcac40004));
  std::string expected = test::writeRandomFile(dir_->file("f"), 32 * KiB, rng());
  auto a = cachingClient();
  ASSERT_TRUE(a);
  auto fa = a->open("f", O_RDONLY);
  ASSERT_TRUE(fa);
  ASSERT_EQ(readRegular(*a, *fa, 0, 32 * KiB), expected);
  auto fb = client_->open("f", O_RDWR);
  ASSERT_TRUE(fb);
  // Another client rewrites the start and grows the file.
  std::string data = randomBytes(40 * KiB, rng);
  iovec w{data.data(), data.size()};
  ASSERT_EQ(*client_->pwritev(*fb, {&w, 1}, 0), data.size());
  auto st = a->fstat(*fa);
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, 40 * KiB);
  uint64_t hits = a->stats().io_cache_hits;
  EXPECT_EQ(readRegular(*a, *fa, 0, 32 * KiB), data.substr(0, 32 * KiB));
  EXPECT_EQ(a->stats().io_cache_hits, hits);
  // An unchanged fstat keeps the pages.
  ASSERT_TRUE(a->fstat(*fa));
  EXPECT_EQ(readRegular(*a, *fa, 0, 32 * KiB), data.substr(0, 32 * KiB));
  EXPECT_EQ(a->stats().io_cache_hits, hits + 1);
  ASSERT_TRUE(a->close(*fa));
  ASSERT_TRUE(client_->close(*fb));
  stopServerCleanly();
}

TEST_F(CacheIoCache, TheByteCapEvictsLeastRecentlyUsedPages) {
  std::mt19937_64 rng(testSeed(0xcac40005));
  const std::string content = test::writeRandomFile(dir_->file("f"), 64 * KiB, rng());
  auto a = cachingClient(16 * KiB);  // 4 pages
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDONLY);
  ASSERT_TRUE(fh);
  for (uint64_t page = 0; page < 4; ++page) {
    ASSERT_EQ(readRegular(*a, *fh, page * 4 * KiB, 4 * KiB),
              content.substr(page * 4 * KiB, 4 * KiB));
  }
  ASSERT_EQ(readRegular(*a, *fh, 0, 4 * KiB), content.substr(0, 4 * KiB));  // page 0: MRU
  EXPECT_EQ(a->stats().io_cache_hits, 1u);
  ASSERT_EQ(readRegular(*a, *fh, 40 * KiB, 4 * KiB),
            content.substr(40 * KiB, 4 * KiB));  // evicts 1
  uint64_t misses = a->stats().io_cache_misses;
  ASSERT_EQ(readRegular(*a, *fh, 0, 4 * KiB), content.substr(0, 4 * KiB));
  EXPECT_EQ(a->stats().io_cache_hits, 2u);
  ASSERT_EQ(readRegular(*a, *fh, 4 * KiB, 4 * KiB), content.substr(4 * KiB, 4 * KiB));
  EXPECT_EQ(a->stats().io_cache_misses, misses + 1) << "page 1 should have been evicted";
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheIoCache, DirectReadsCopyZeroBytesWithTheCacheOn) {
  std::mt19937_64 rng(testSeed(0xcac40006));
  const uint64_t size = 4096 * KiB;
  const std::string content = test::writeRandomFile(dir_->file("f"), size, rng());
  auto a = cachingClient(8192 * KiB);
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDONLY);
  ASSERT_TRUE(fh);
  ASSERT_EQ(readRegular(*a, *fh, 0, size), content);  // the whole file is cached
  auto before = a->stats();
  uint64_t allowance = 0;
  for (int i = 0; i < 40; ++i) {
    uint64_t off = rng() % size;
    size_t len = 1 + rng() % std::min<uint64_t>(size - off, 512 * KiB);
    allowance += directCopyAllowance(len);
    ScatterBuffer buf(len, 1 + rng() % 6, rng);
    auto r = a->preadvDirect(*fh, buf.iov(), off);
    ASSERT_TRUE(r) << r.error().toString();
    ASSERT_EQ(*r, len);
    auto bad = buf.check(content.substr(off, len));
    ASSERT_FALSE(bad) << *bad;
  }
  auto after = a->stats();
  EXPECT_LE(after.bytes_copied - before.bytes_copied, allowance);
  EXPECT_EQ(after.io_cache_hits, before.io_cache_hits) << "a direct read was served by the cache";
  EXPECT_GT(after.io_cache_purges, before.io_cache_purges);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheIoCache, PerFileSwitchesTurnEachLayerOffForOneFile) {
  std::mt19937_64 rng(testSeed(0xcac40007));
  const std::string content = test::writeRandomFile(dir_->file("f"), 16 * KiB, rng());
  fops::ClientOptions options;
  options.io_cache_bytes = 1024 * KiB;
  options.write_behind = true;
  options.write_behind_delay = std::chrono::milliseconds(60000);
  auto a = connect(options);
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR);
  ASSERT_TRUE(fh);
  ASSERT_TRUE(a->setFileOptions(*fh, fops::FileOptions{false, false}));
  ASSERT_EQ(readRegular(*a, *fh, 0, 16 * KiB), content);
  ASSERT_EQ(readRegular(*a, *fh, 0, 16 * KiB), content);
  EXPECT_EQ(a->stats().io_cache_hits, 0u);
  std::string data = randomBytes(100, rng);
  iovec w{data.data(), data.size()};
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 0));
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 100));
  EXPECT_EQ(a->stats().writes_collapsed, 0u);
  EXPECT_EQ(test::readLocalFile(dir_->file("f")).substr(0, 200), data + data)
      << "a regular write was staged with write-behind off for the file";
  ASSERT_TRUE(a->setFileOptions(*fh, fops::FileOptions{}));
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 200));
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 300));
  EXPECT_EQ(a->stats().writes_collapsed, 1u);
  EXPECT_FALSE(a->setFileOptions(987654321, fops::FileOptions{}));
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
