// Byte-for-byte integrity of the read and write paths against a real
// zcio-server and real files: edge and random sizes from 0 B to 16 MiB, iovs
// of 1..64 unaligned segments at unaligned addresses, canaries around every
// segment. The seed is printed; replay a failure with ZCIO_TEST_SEED.
#include <fcntl.h>
#include <sys/mman.h>

#include <algorithm>
#include <random>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * 1024;

std::vector<size_t> sizesToTest(std::mt19937_64& rng, size_t random_count) {
  std::vector<size_t> sizes = {0, 1, 4095, 4096, 4097, MiB - 1, MiB, MiB + 1, 16 * MiB};
  // Log-uniform random sizes in [1, 16 MiB].
  std::uniform_real_distribution<double> exponent(0.0, 24.0);
  for (size_t i = 0; i < random_count; ++i) {
    sizes.push_back(std::max<size_t>(1, static_cast<size_t>(std::exp2(exponent(rng)))));
  }
  return sizes;
}

size_t firstDifference(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  auto [ia, ib] = std::mismatch(a.begin(), a.begin() + static_cast<long>(n), b.begin());
  return static_cast<size_t>(ia - a.begin());
}

const char* modeName(fops::IoMode mode) {
  return mode == fops::IoMode::kDirect ? "direct" : "regular";
}

class FopsIntegrity : public ServerFixture {};

TEST_F(FopsIntegrity, ReadsMatchTheFileForEdgeAndRandomSizesAndIovShapes) {
  std::mt19937_64 rng(testSeed(0x21c10001));
  const size_t file_size = 18 * MiB + 12345;
  const std::string content = test::writeRandomFile(dir_->file("data.bin"), file_size, rng());
  auto fh = client_->open("data.bin", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  for (size_t size : sizesToTest(rng, 16)) {
    for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
      size_t segments = 1 + rng() % 64;
      uint64_t offset = rng() % (file_size - size + 1);
      ScatterBuffer buffer(size, segments, rng);
      SCOPED_TRACE(::testing::Message() << modeName(mode) << " read of " << size << " B at offset "
                                        << offset << " into " << buffer.shape());
      auto before = client_->stats();
      auto n = mode == fops::IoMode::kDirect ? client_->preadvDirect(*fh, buffer.iov(), offset)
                                             : client_->preadv(*fh, buffer.iov(), offset);
      ASSERT_TRUE(n) << n.error().toString();
      ASSERT_EQ(*n, size);
      auto bad = buffer.check(content.substr(offset, size));
      ASSERT_FALSE(bad) << *bad;
      auto after = client_->stats();
      EXPECT_EQ(after.bytes_read - before.bytes_read, size);
      // The zero-copy claim, per call: direct copies nothing, regular
      // copies exactly the payload once.
      if (mode == fops::IoMode::kDirect) {
        EXPECT_LE(after.bytes_copied - before.bytes_copied, directCopyAllowance(size));
      } else {
        EXPECT_EQ(after.bytes_copied - before.bytes_copied, size);
      }
    }
  }
  ASSERT_TRUE(client_->close(*fh));
  stopServerCleanly();
}

TEST_F(FopsIntegrity, WritesLandOnDiskAndReadBackForEdgeAndRandomSizesAndIovShapes) {
  std::mt19937_64 rng(testSeed(0x21c10002));
  std::string model = test::writeRandomFile(dir_->file("out.bin"), 4 * MiB + 777, rng());
  auto fh = client_->open("out.bin", O_RDWR);
  ASSERT_TRUE(fh) << fh.error().toString();

  auto sizes = sizesToTest(rng, 12);
  std::shuffle(sizes.begin(), sizes.end(), rng);
  for (size_t size : sizes) {
    for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
      // Sometimes past EOF (leaving a hole), sometimes overlapping old data.
      uint64_t offset = rng() % (model.size() + 8 * KiB);
      std::string data = randomBytes(size, rng);
      ScatterBuffer source(size, 1 + rng() % 64, rng);
      source.fill(data);
      SCOPED_TRACE(::testing::Message() << modeName(mode) << " write of " << size << " B at offset "
                                        << offset << " from " << source.shape());
      auto before = client_->stats();
      auto n = mode == fops::IoMode::kDirect ? client_->pwritevDirect(*fh, source.iov(), offset)
                                             : client_->pwritev(*fh, source.iov(), offset);
      ASSERT_TRUE(n) << n.error().toString();
      ASSERT_EQ(*n, size);
      auto after = client_->stats();
      EXPECT_EQ(after.bytes_written - before.bytes_written, size);
      if (mode == fops::IoMode::kDirect) {
        EXPECT_LE(after.bytes_copied - before.bytes_copied, directCopyAllowance(size));
      } else {
        EXPECT_EQ(after.bytes_copied - before.bytes_copied, size);
      }
      // A write never scribbles on its own source buffer.
      auto intact = source.check(data);
      ASSERT_FALSE(intact) << "write source changed: " << *intact;

      if (size > 0) {
        if (offset > model.size()) model.resize(offset, '\0');  // the hole reads as zeros
        if (offset + size > model.size()) model.resize(offset + size);
        model.replace(offset, size, data);
      }
      // Read the range back through the other mode, into another shape.
      ScatterBuffer back(size, 1 + rng() % 64, rng);
      auto r = mode == fops::IoMode::kDirect ? client_->preadv(*fh, back.iov(), offset)
                                             : client_->preadvDirect(*fh, back.iov(), offset);
      ASSERT_TRUE(r) << r.error().toString();
      ASSERT_EQ(*r, size);
      auto bad = back.check(data);
      ASSERT_FALSE(bad) << "read back: " << *bad;
    }
  }
  ASSERT_TRUE(client_->fsync(*fh));
  auto st = client_->fstat(*fh);
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, model.size());

  // The file on disk, read locally, is exactly the model.
  std::string disk = test::readLocalFile(dir_->file("out.bin"));
  ASSERT_EQ(disk.size(), model.size());
  ASSERT_TRUE(disk == model) << "on-disk file differs at byte " << firstDifference(disk, model);

  // And the whole file read back remotely in one direct call matches too.
  std::string whole(model.size(), '\0');
  iovec iov{whole.data(), whole.size()};
  auto r = client_->preadvDirect(*fh, {&iov, 1}, 0);
  ASSERT_TRUE(r) << r.error().toString();
  ASSERT_EQ(*r, model.size());
  ASSERT_TRUE(whole == model) << "remote read differs at byte " << firstDifference(whole, model);
  ASSERT_TRUE(client_->close(*fh));
  stopServerCleanly();
}

TEST_F(FopsIntegrity, DataWrittenOnOneConnectionIsReadOnAnother) {
  std::mt19937_64 rng(testSeed(0x21c10003));
  auto other = connect();
  ASSERT_NE(other, nullptr);
  auto wfh = client_->open("shared.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(wfh) << wfh.error().toString();
  std::string data = randomBytes(3 * MiB + 5, rng);
  ScatterBuffer source(data.size(), 17, rng);
  source.fill(data);
  auto n = client_->pwritevDirect(*wfh, source.iov(), 0);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_EQ(*n, data.size());

  auto rfh = other->open("shared.bin", O_RDONLY);
  ASSERT_TRUE(rfh) << rfh.error().toString();
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    ScatterBuffer dst(data.size(), 33, rng);
    auto r = mode == fops::IoMode::kDirect ? other->preadvDirect(*rfh, dst.iov(), 0)
                                           : other->preadv(*rfh, dst.iov(), 0);
    ASSERT_TRUE(r) << r.error().toString();
    ASSERT_EQ(*r, data.size());
    auto bad = dst.check(data);
    ASSERT_FALSE(bad) << modeName(mode) << ": " << *bad;
  }
  // File handles are per connection: connection B's handle number means
  // nothing on A unless A opened it (both start at 1 here, so use one A
  // never issued).
  auto foreign = client_->fstat(*wfh + 1000);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, EBADF);
  stopServerCleanly();
}

TEST_F(FopsIntegrity, RequestsOverTheSizeLimitFailWithEinvalAndTouchNothing) {
  auto fh = client_->open("big.bin", O_RDWR | O_CREAT, 0600);
  ASSERT_TRUE(fh) << fh.error().toString();
  // One past the limit, in inaccessible memory: any byte zcio touched
  // would fault.
  const size_t length = fops::Client::maxIoSize() + 1;
  void* reserved =
      mmap(nullptr, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(reserved, MAP_FAILED);
  const size_t half = length / 2;
  iovec iov[2] = {{reserved, half}, {static_cast<char*>(reserved) + half, length - half}};
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    auto r = mode == fops::IoMode::kDirect ? client_->preadvDirect(*fh, iov, 0)
                                           : client_->preadv(*fh, iov, 0);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EINVAL);
    auto w = mode == fops::IoMode::kDirect ? client_->pwritevDirect(*fh, iov, 0)
                                           : client_->pwritev(*fh, iov, 0);
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, EINVAL);
  }
  munmap(reserved, length);
  auto st = client_->fstat(*fh);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->size, 0u);
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
