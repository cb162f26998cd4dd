// Write-behind's rules against a real server: small regular writes are
// collapsed and direct ones never are; a direct write waits for earlier
// overlapping write-behind writes and lands after them, and its buffer is not
// retained; an overlapping read sends staged data first; staged data is sent
// after the time cap; a failed write-behind write is reported on the next
// operation and on fsync/close; async writers are held at the window.
#include <fcntl.h>

#include <cstring>
#include <random>
#include <thread>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr uint64_t KiB = 1024;

class CacheWriteBehind : public ServerFixture {
 protected:
  std::unique_ptr<fops::Client> writeBehindClient(
      std::chrono::milliseconds delay = std::chrono::milliseconds(60000),
      uint64_t aggregate = 1024 * KiB) {
    fops::ClientOptions options;
    options.write_behind = true;
    options.write_behind_delay = delay;
    options.write_behind_aggregate_bytes = aggregate;
    return connect(options);
  }
};

TEST_F(CacheWriteBehind, SmallRegularWritesAreCollapsedDirectOnesNever) {
  std::mt19937_64 rng(testSeed(0xcb0e0001));
  auto a = writeBehindClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh);
  std::string expected;
  auto before = a->stats();
  for (int i = 0; i < 64; ++i) {
    std::string data = randomBytes(1 + rng() % 1000, rng);
    ScatterBuffer src(data.size(), 1 + rng() % 3, rng);
    src.fill(data);
    auto w = a->pwritev(*fh, src.iov(), expected.size());
    ASSERT_TRUE(w) << w.error().toString();
    ASSERT_EQ(*w, data.size());
    expected += data;
  }
  auto mid = a->stats();
  EXPECT_EQ(mid.writes_collapsed - before.writes_collapsed, 63u);
  EXPECT_EQ(mid.requests, before.requests) << "staged writes were sent before fsync";
  ASSERT_TRUE(a->fsync(*fh));
  auto synced = a->stats();
  EXPECT_EQ(synced.write_behind_flushes - mid.write_behind_flushes, 1u);
  EXPECT_EQ(test::readLocalFile(dir_->file("f")), expected);

  // Direct writes: one call each, never collapsed.
  for (int i = 0; i < 16; ++i) {
    std::string data = randomBytes(1 + rng() % 1000, rng);
    iovec v{data.data(), data.size()};
    auto w = a->pwritevDirect(*fh, {&v, 1}, expected.size());
    ASSERT_TRUE(w) << w.error().toString();
    expected += data;
  }
  auto after = a->stats();
  EXPECT_EQ(after.writes_collapsed, synced.writes_collapsed);
  EXPECT_EQ(after.write_behind_flushes, synced.write_behind_flushes);
  EXPECT_EQ(after.requests - synced.requests, 16u);
  EXPECT_EQ(test::readLocalFile(dir_->file("f")), expected);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, ADirectWriteOrderedAfterOverlappingWriteBehindWritesLandsLast) {
  std::mt19937_64 rng(testSeed(0xcb0e0002));
  auto a = writeBehindClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh);
  for (int round = 0; round < 20; ++round) {
    // A few staged regular writes, then a direct write over part of them.
    std::string expected = test::readLocalFile(dir_->file("f"));
    expected.resize(64 * KiB, '\0');
    for (int i = 0; i < 4; ++i) {
      uint64_t off = rng() % (48 * KiB);
      std::string data = randomBytes(1 + rng() % (16 * KiB), rng);
      iovec v{data.data(), data.size()};
      ASSERT_TRUE(a->pwritev(*fh, {&v, 1}, off));
      expected.replace(off, data.size(), data);
    }
    uint64_t off = rng() % (48 * KiB);
    std::string direct = randomBytes(1 + rng() % (16 * KiB), rng);
    std::string buffer = direct;
    iovec v{buffer.data(), buffer.size()};
    auto w = a->pwritevDirect(*fh, {&v, 1}, off);
    ASSERT_TRUE(w) << w.error().toString();
    expected.replace(off, direct.size(), direct);
    // The buffer is the caller's again: scribbling on it changes nothing.
    std::memset(buffer.data(), 0x5a, buffer.size());
    ASSERT_TRUE(a->fsync(*fh));
    std::string got = test::readLocalFile(dir_->file("f"));
    got.resize(64 * KiB, '\0');
    ASSERT_EQ(got, expected) << "round " << round;
  }
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, AnOverlappingReadSendsStagedDataFirst) {
  std::mt19937_64 rng(testSeed(0xcb0e0003));
  std::string expected = test::writeRandomFile(dir_->file("f"), 32 * KiB, rng());
  auto a = writeBehindClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR);
  ASSERT_TRUE(fh);
  for (auto mode : {fops::IoMode::kRegular, fops::IoMode::kDirect}) {
    uint64_t off = rng() % (24 * KiB);
    std::string data = randomBytes(1 + rng() % (8 * KiB), rng);
    iovec w{data.data(), data.size()};
    ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, off));
    expected.replace(off, data.size(), data);
    std::string got(32 * KiB, '\0');
    iovec r{got.data(), got.size()};
    auto n = mode == fops::IoMode::kDirect ? a->preadvDirect(*fh, {&r, 1}, 0)
                                           : a->preadv(*fh, {&r, 1}, 0);
    ASSERT_TRUE(n) << n.error().toString();
    EXPECT_EQ(got, expected);
  }
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, StagedDataIsSentAfterTheTimeCap) {
  std::mt19937_64 rng(testSeed(0xcb0e0004));
  auto a = writeBehindClient(std::chrono::milliseconds(20));
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh);
  std::string data = randomBytes(3000, rng);
  iovec w{data.data(), data.size()};
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 0));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (test::readLocalFile(dir_->file("f")) != data &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(test::readLocalFile(dir_->file("f")), data);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, AFailedWriteBehindWriteSurfacesOnFsyncAndOnClose) {
  std::mt19937_64 rng(testSeed(0xcb0e0005));
  test::writeRandomFile(dir_->file("f"), 8 * KiB, rng());
  auto a = writeBehindClient();
  ASSERT_TRUE(a);
  std::string data = randomBytes(100, rng);
  iovec w{data.data(), data.size()};
  {
    // Acknowledged early, refused by the server (read-only handle): fsync
    // reports it once, then the file is usable again.
    auto fh = a->open("f", O_RDONLY);
    ASSERT_TRUE(fh);
    auto ack = a->pwritev(*fh, {&w, 1}, 0);
    ASSERT_TRUE(ack) << "a write-behind write is acknowledged early";
    auto sync = a->fsync(*fh);
    ASSERT_FALSE(sync) << "the write-behind error was lost";
    EXPECT_EQ(sync.error().code, EBADF) << sync.error().toString();
    EXPECT_TRUE(a->fsync(*fh));
    ASSERT_TRUE(a->close(*fh));
  }
  {
    auto fh = a->open("f", O_RDONLY);
    ASSERT_TRUE(fh);
    ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 0));
    auto closed = a->close(*fh);
    ASSERT_FALSE(closed) << "the write-behind error was lost at close";
    EXPECT_EQ(closed.error().code, EBADF) << closed.error().toString();
    // The handle was closed on the server all the same.
    auto again = a->close(*fh);
    EXPECT_FALSE(again);
  }
  {
    // Once sent (the time cap) and failed, the next operation on the file
    // reports it, and it stays latched until fsync.
    auto b = writeBehindClient(std::chrono::milliseconds(5));
    ASSERT_TRUE(b);
    auto fh = b->open("f", O_RDONLY);
    ASSERT_TRUE(fh);
    ASSERT_TRUE(b->pwritev(*fh, {&w, 1}, 4 * KiB));
    std::string got(100, '\0');
    iovec r{got.data(), got.size()};
    Result<size_t> read = makeError(0, "");
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    do {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      read = b->preadv(*fh, {&r, 1}, 0);  // not overlapping the write
    } while (read && std::chrono::steady_clock::now() < deadline);
    ASSERT_FALSE(read) << "the next operation did not report the error";
    EXPECT_EQ(read.error().code, EBADF);
    EXPECT_FALSE(b->fstat(*fh));
    auto sync = b->fsync(*fh);
    ASSERT_FALSE(sync);
    EXPECT_EQ(sync.error().code, EBADF);
    EXPECT_TRUE(b->preadv(*fh, {&r, 1}, 0));
    ASSERT_TRUE(b->close(*fh));
  }
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, AsyncWritersAreHeldAtTheWindowUntilTheServerCatchesUp) {
  std::mt19937_64 rng(testSeed(0xcb0e0007));
  constexpr uint64_t kBlock = 64 * KiB;
  constexpr uint64_t kWindow = 256 * KiB;
  constexpr size_t kWrites = 32;  // 2 MiB: eight windows
  fops::ClientOptions options;
  options.write_behind = true;
  options.write_behind_aggregate_bytes = kBlock;  // each write is sent at once
  options.write_behind_window_bytes = kWindow;
  options.write_behind_delay = std::chrono::milliseconds(60000);
  auto a = connect(options);
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh);
  std::string expected = randomBytes(kWrites * kBlock, rng);

  // With the server stopped nothing completes: only a window's worth of
  // async writes may be acknowledged; the rest are held, not buffered
  // without bound.
  ASSERT_TRUE(pauseProcess(server_->pid()));
  Latch latch(kWrites);
  for (size_t i = 0; i < kWrites; ++i) {
    std::string chunk = expected.substr(i * kBlock, kBlock);  // freed on return: copied
    iovec v{chunk.data(), chunk.size()};
    a->pwritevAsync(*fh, {&v, 1}, i * kBlock, fops::IoMode::kRegular, latch.callback(i));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  size_t acked = latch.completed();
  ASSERT_TRUE(resumeProcess(server_->pid()));
  EXPECT_GE(acked, 1u) << "writes inside the window are acknowledged early";
  EXPECT_LE(acked, kWindow / kBlock) << "async writes were acknowledged past the window";

  ASSERT_TRUE(latch.wait(std::chrono::seconds(120))) << "held acks never came";
  for (size_t i = 0; i < kWrites; ++i) {
    ASSERT_TRUE(latch.result(i)) << i << ": " << latch.result(i).error().toString();
    EXPECT_EQ(*latch.result(i), kBlock);
  }
  ASSERT_TRUE(a->fsync(*fh));
  EXPECT_EQ(test::readLocalFile(dir_->file("f")), expected);
  ASSERT_TRUE(a->close(*fh));
  stopServerCleanly();
}

TEST_F(CacheWriteBehind, WritesStagedWhenTheServerVanishesFailFsync) {
  std::mt19937_64 rng(testSeed(0xcb0e0006));
  auto a = writeBehindClient();
  ASSERT_TRUE(a);
  auto fh = a->open("f", O_RDWR | O_CREAT);
  ASSERT_TRUE(fh);
  std::string data = randomBytes(5000, rng);
  iovec w{data.data(), data.size()};
  ASSERT_TRUE(a->pwritev(*fh, {&w, 1}, 0));
  ASSERT_EQ(server_->stop(), 0);
  auto sync = a->fsync(*fh);
  EXPECT_FALSE(sync) << "staged data was lost silently";
  EXPECT_FALSE(a->close(*fh));
}

}  // namespace
}  // namespace zcio::itest
