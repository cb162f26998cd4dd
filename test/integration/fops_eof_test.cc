// Short reads at EOF: a read across EOF returns the bytes up to EOF, a read
// at or past EOF returns 0, and no byte of the caller's buffer past the
// returned count changes (canaries), on both read paths, sync and async.
#include <fcntl.h>

#include <random>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr size_t MiB = 1024 * 1024;

class FopsEof : public ServerFixture {
 protected:
  Result<size_t> read(fops::FileHandle fh, const ScatterBuffer& b, uint64_t offset,
                      fops::IoMode mode) {
    return mode == fops::IoMode::kDirect ? client_->preadvDirect(fh, b.iov(), offset)
                                         : client_->preadv(fh, b.iov(), offset);
  }
};

const char* modeName(fops::IoMode mode) {
  return mode == fops::IoMode::kDirect ? "direct" : "regular";
}

TEST_F(FopsEof, ReadAcrossEofReturnsTheBytesUpToEofAndLeavesTheRestUntouched) {
  std::mt19937_64 rng(testSeed(0xe0f00001));
  for (size_t file_size : {size_t{10000}, MiB + 3, size_t{1}}) {
    std::string name = "f" + std::to_string(file_size);
    std::string content = test::writeRandomFile(dir_->file(name), file_size, rng());
    auto fh = client_->open(name, O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
    struct Case {
      uint64_t offset;
      size_t length;
    };
    std::vector<Case> cases = {
        {file_size - 1, 2},  // one byte short
        {file_size > 1000 ? file_size - 1000 : 0, 4096},
        {0, file_size + 1},                              // whole file plus one
        {0, 16 * MiB},                                   // far more than the file
        {file_size / 2, file_size - file_size / 2 + 1},  // the second half, plus one
    };
    for (const Case& c : cases) {
      for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
        for (size_t segments : {size_t{1}, size_t{7}, size_t{64}}) {
          ScatterBuffer buffer(c.length, segments, rng);
          size_t want = std::min<uint64_t>(c.length, file_size - c.offset);
          ASSERT_LT(want, c.length) << "case must cross EOF";
          SCOPED_TRACE(::testing::Message()
                       << modeName(mode) << " read of " << c.length << " at " << c.offset
                       << " in a " << file_size << "-byte file, " << buffer.shape());
          auto before = client_->stats();
          auto n = read(*fh, buffer, c.offset, mode);
          ASSERT_TRUE(n) << n.error().toString();
          ASSERT_EQ(*n, want);
          auto bad = buffer.check(content.substr(c.offset, want));
          ASSERT_FALSE(bad) << *bad;
          auto after = client_->stats();
          EXPECT_EQ(after.bytes_read - before.bytes_read, want);
          if (mode == fops::IoMode::kDirect) {
            EXPECT_LE(after.bytes_copied - before.bytes_copied, directCopyAllowance(c.length));
          } else {
            EXPECT_EQ(after.bytes_copied - before.bytes_copied, want);
          }
        }
      }
    }
    ASSERT_TRUE(client_->close(*fh));
  }
  stopServerCleanly();
}

TEST_F(FopsEof, ReadAtOrPastEofReturnsZeroAndTouchesNothing) {
  std::mt19937_64 rng(testSeed(0xe0f00002));
  const size_t file_size = 12345;
  test::writeRandomFile(dir_->file("f"), file_size, rng());
  auto fh = client_->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  for (uint64_t offset :
       {uint64_t{file_size}, uint64_t{file_size + 1}, uint64_t{1} << 30, uint64_t{1} << 40}) {
    for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
      for (size_t length : {size_t{0}, size_t{1}, size_t{4096}, MiB}) {
        ScatterBuffer buffer(length, 1 + rng() % 8, rng);
        SCOPED_TRACE(::testing::Message()
                     << modeName(mode) << " read of " << length << " at " << offset);
        auto n = read(*fh, buffer, offset, mode);
        ASSERT_TRUE(n) << n.error().toString();
        EXPECT_EQ(*n, 0u);
        auto bad = buffer.check("");
        ASSERT_FALSE(bad) << *bad;
      }
    }
  }
  // An empty file reads as 0 bytes from offset 0.
  auto empty = client_->open("empty", O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(empty) << empty.error().toString();
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    ScatterBuffer buffer(4096, 3, rng);
    auto n = read(*empty, buffer, 0, mode);
    ASSERT_TRUE(n) << n.error().toString();
    EXPECT_EQ(*n, 0u);
    ASSERT_FALSE(buffer.check(""));
  }
  stopServerCleanly();
}

TEST_F(FopsEof, AsyncShortReadsCompleteWithTheShortCount) {
  std::mt19937_64 rng(testSeed(0xe0f00003));
  const size_t file_size = 3 * MiB + 1;
  std::string content = test::writeRandomFile(dir_->file("f"), file_size, rng());
  auto fh = client_->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  // Many short reads outstanding at once, interleaved with full ones, so the
  // reader must get every reply's length from its own frame.
  constexpr size_t kCalls = 48;
  std::vector<std::unique_ptr<ScatterBuffer>> buffers;
  std::vector<uint64_t> offsets;
  std::vector<size_t> expected;
  Latch latch(kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    size_t length = 1 + rng() % (256 * 1024);
    uint64_t offset = (i % 3 == 0)   ? file_size - rng() % length  // crosses EOF (or starts at it)
                      : (i % 3 == 1) ? file_size + rng() % 4096    // at/after EOF
                                     : rng() % (file_size - length);
    offsets.push_back(offset);
    expected.push_back(offset >= file_size ? 0 : std::min<uint64_t>(length, file_size - offset));
    buffers.push_back(std::make_unique<ScatterBuffer>(length, 1 + rng() % 16, rng));
    client_->preadvAsync(*fh, buffers.back()->iov(), offset,
                         i % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular, latch.callback(i));
  }
  ASSERT_TRUE(latch.wait(std::chrono::seconds(30))) << latch.completed() << " of " << kCalls;
  for (size_t i = 0; i < kCalls; ++i) {
    SCOPED_TRACE(::testing::Message()
                 << "call " << i << " offset " << offsets[i] << " length " << buffers[i]->total());
    ASSERT_TRUE(latch.result(i)) << latch.result(i).error().toString();
    EXPECT_EQ(*latch.result(i), expected[i]);
    std::string want = expected[i] ? content.substr(offsets[i], expected[i]) : std::string();
    auto bad = buffers[i]->check(want);
    ASSERT_FALSE(bad) << *bad;
  }
  EXPECT_EQ(latch.duplicates(), 0u) << "a callback ran twice";
  stopServerCleanly();
}

TEST_F(FopsEof, EofMovesWithWritesAndHolesReadAsZeros) {
  std::mt19937_64 rng(testSeed(0xe0f00004));
  auto fh = client_->open("grow", O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(fh) << fh.error().toString();
  std::string head = randomBytes(5000, rng);
  iovec w{head.data(), head.size()};
  ASSERT_EQ(*client_->pwritevDirect(*fh, {&w, 1}, 0), head.size());
  std::string tail = randomBytes(333, rng);
  iovec t{tail.data(), tail.size()};
  const uint64_t tail_at = 9000;  // leaves a 4000-byte hole
  ASSERT_EQ(*client_->pwritev(*fh, {&t, 1}, tail_at), tail.size());
  std::string model = head + std::string(tail_at - head.size(), '\0') + tail;
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    ScatterBuffer buffer(20000, 9, rng);
    auto n = read(*fh, buffer, 0, mode);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, model.size());
    auto bad = buffer.check(model);
    ASSERT_FALSE(bad) << modeName(mode) << ": " << *bad;
  }
  auto st = client_->stat("grow");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, model.size());
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
