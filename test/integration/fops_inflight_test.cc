// Many requests in flight on one connection (async, mixed direct/regular,
// reads and writes), and several threads sharing one Client.
#include <fcntl.h>

#include <atomic>
#include <random>
#include <thread>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * 1024;

class FopsInFlight : public ServerFixture {};

TEST_F(FopsInFlight, TwoHundredFiftySixMixedAsyncCallsOnOneConnectionAllCompleteCorrectly) {
  std::mt19937_64 rng(testSeed(0x1f100001));
  const size_t src_size = 8 * MiB + 99;
  std::string src = test::writeRandomFile(dir_->file("src"), src_size, rng());
  auto rfh = client_->open("src", O_RDONLY);
  ASSERT_TRUE(rfh) << rfh.error().toString();
  auto wfh = client_->open("dst", O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(wfh) << wfh.error().toString();

  constexpr size_t kCalls = 256;
  constexpr size_t kSlot = 64 * KiB;  // write i owns [i*kSlot, i*kSlot + its length)
  struct Op {
    bool write;
    fops::IoMode mode;
    uint64_t offset;
    std::string data;  // write: what was sent; read: what the file holds there
    std::unique_ptr<ScatterBuffer> buffer;
  };
  std::vector<Op> ops(kCalls);
  std::string dst_model(kCalls * kSlot, '\0');
  size_t dst_size = 0;
  for (size_t i = 0; i < kCalls; ++i) {
    Op& op = ops[i];
    op.write = rng() % 2;
    op.mode = rng() % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular;
    if (op.write) {
      size_t length = 1 + rng() % kSlot;
      op.offset = i * kSlot;
      op.data = randomBytes(length, rng);
      op.buffer = std::make_unique<ScatterBuffer>(length, 1 + rng() % 8, rng);
      op.buffer->fill(op.data);
      dst_model.replace(op.offset, length, op.data);
      dst_size = std::max<size_t>(dst_size, op.offset + length);
    } else {
      size_t length = rng() % (192 * KiB);
      op.offset = rng() % (src_size - length);
      op.data = src.substr(op.offset, length);
      op.buffer = std::make_unique<ScatterBuffer>(length, 1 + rng() % 8, rng);
    }
  }
  dst_model.resize(dst_size);

  auto before = client_->stats();
  Latch latch(kCalls);
  // All 256 are submitted before any is waited for.
  for (size_t i = 0; i < kCalls; ++i) {
    Op& op = ops[i];
    if (op.write) {
      client_->pwritevAsync(*wfh, op.buffer->iov(), op.offset, op.mode, latch.callback(i));
      if (op.mode == fops::IoMode::kRegular) {
        // Regular writes copy at submission: the caller's iov is free at once.
        for (const auto& v : op.buffer->iov()) std::memset(v.iov_base, 0xEE, v.iov_len);
      }
    } else {
      client_->preadvAsync(*rfh, op.buffer->iov(), op.offset, op.mode, latch.callback(i));
    }
  }
  ASSERT_TRUE(latch.wait(std::chrono::seconds(60)))
      << "only " << latch.completed() << " of " << kCalls << " calls completed";
  EXPECT_EQ(latch.duplicates(), 0u) << "a callback ran twice";

  uint64_t expected_copies = 0;
  uint64_t allowance = 0;
  for (size_t i = 0; i < kCalls; ++i) {
    Op& op = ops[i];
    SCOPED_TRACE(::testing::Message() << "call " << i << (op.write ? " write " : " read ")
                                      << (op.mode == fops::IoMode::kDirect ? "direct" : "regular")
                                      << " at " << op.offset << " of " << op.data.size());
    ASSERT_TRUE(latch.result(i)) << latch.result(i).error().toString();
    ASSERT_EQ(*latch.result(i), op.data.size());
    if (op.mode == fops::IoMode::kRegular) expected_copies += op.data.size();
    if (op.mode == fops::IoMode::kDirect) allowance += directCopyAllowance(op.data.size());
    if (!op.write) {
      auto bad = op.buffer->check(op.data);
      ASSERT_FALSE(bad) << *bad;
    } else if (op.mode == fops::IoMode::kDirect) {
      auto bad = op.buffer->check(op.data);
      ASSERT_FALSE(bad) << "direct write source changed: " << *bad;
    }
  }
  auto after = client_->stats();
  EXPECT_EQ(after.requests - before.requests, kCalls);
  EXPECT_GE(after.bytes_copied - before.bytes_copied, expected_copies);
  EXPECT_LE(after.bytes_copied - before.bytes_copied, expected_copies + allowance);
  EXPECT_EQ(after.timeouts, 0u);
  EXPECT_EQ(after.protocol_errors, 0u);

  ASSERT_TRUE(client_->fsync(*wfh));
  std::string disk = test::readLocalFile(dir_->file("dst"));
  ASSERT_EQ(disk.size(), dst_model.size());
  ASSERT_TRUE(disk == dst_model) << "dst on disk differs from what the writes sent";
  stopServerCleanly();
}

TEST_F(FopsInFlight, SeveralThreadsShareOneClient) {
  const uint64_t seed = testSeed(0x1f100002);
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 40;
  constexpr size_t kRegion = 512 * KiB;
  std::string initial(kThreads * kRegion, '\0');
  {
    std::mt19937_64 rng(seed);
    initial = test::writeRandomFile(dir_->file("shared"), kThreads * kRegion, rng());
  }
  auto fh = client_->open("shared", O_RDWR);
  ASSERT_TRUE(fh) << fh.error().toString();

  std::vector<std::string> models(kThreads);
  std::vector<std::string> failures(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    models[t] = initial.substr(t * kRegion, kRegion);
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(seed + 1 + t);
      std::string& model = models[t];
      const uint64_t base = t * kRegion;
      ready.fetch_add(1);
      while (ready.load() < kThreads) std::this_thread::yield();
      for (int i = 0; i < kOpsPerThread && failures[t].empty(); ++i) {
        size_t length = 1 + rng() % (64 * KiB);
        uint64_t at = rng() % (kRegion - length + 1);
        auto mode = rng() % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular;
        switch (rng() % 3) {
          case 0: {  // write, then read it back the other way
            std::string data = randomBytes(length, rng);
            ScatterBuffer src(length, 1 + rng() % 8, rng);
            src.fill(data);
            auto n = mode == fops::IoMode::kDirect
                         ? client_->pwritevDirect(*fh, src.iov(), base + at)
                         : client_->pwritev(*fh, src.iov(), base + at);
            if (!n || *n != length) {
              failures[t] = "write failed: " + (n ? std::to_string(*n) : n.error().toString());
              break;
            }
            model.replace(at, length, data);
            [[fallthrough]];
          }
          case 1: {  // read and compare with this thread's model
            ScatterBuffer dst(length, 1 + rng() % 8, rng);
            auto n = mode == fops::IoMode::kDirect
                         ? client_->preadv(*fh, dst.iov(), base + at)
                         : client_->preadvDirect(*fh, dst.iov(), base + at);
            if (!n || *n != length) {
              failures[t] = "read failed: " + (n ? std::to_string(*n) : n.error().toString());
              break;
            }
            if (auto bad = dst.check(model.substr(at, length))) failures[t] = "read: " + *bad;
            break;
          }
          default: {  // metadata calls interleaved with the data calls
            auto st = client_->fstat(*fh);
            if (!st || st->size != kThreads * kRegion) failures[t] = "fstat returned a wrong size";
            break;
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], "") << "thread " << t;

  ASSERT_TRUE(client_->fsync(*fh));
  std::string disk = test::readLocalFile(dir_->file("shared"));
  std::string expected;
  for (const auto& m : models) expected += m;
  ASSERT_TRUE(disk == expected) << "file on disk differs from the threads' writes";
  stopServerCleanly();
}

TEST_F(FopsInFlight, MoreAsyncCallsThanTableSlotsEachCompleteOnceWithDataOrEagain) {
  std::mt19937_64 rng(testSeed(0x1f100003));
  std::string content = test::writeRandomFile(dir_->file("f"), 4 * MiB, rng());
  fops::ClientOptions options;
  options.max_in_flight = 8;
  auto small = connect(options);
  ASSERT_NE(small, nullptr);
  auto fh = small->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  constexpr size_t kCalls = 64;
  std::vector<std::unique_ptr<ScatterBuffer>> buffers;
  std::vector<uint64_t> offsets;
  Latch latch(kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    offsets.push_back(rng() % (3 * MiB));
    buffers.push_back(std::make_unique<ScatterBuffer>(256 * KiB, 1 + rng() % 4, rng));
    small->preadvAsync(*fh, buffers.back()->iov(), offsets.back(),
                       i % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular, latch.callback(i));
  }
  ASSERT_TRUE(latch.wait(std::chrono::seconds(30))) << latch.completed() << " of " << kCalls;
  EXPECT_EQ(latch.duplicates(), 0u);
  size_t ok = 0;
  for (size_t i = 0; i < kCalls; ++i) {
    const auto& r = latch.result(i);
    if (r) {
      ++ok;
      ASSERT_EQ(*r, 256 * KiB);
      auto bad = buffers[i]->check(content.substr(offsets[i], 256 * KiB));
      ASSERT_FALSE(bad) << "call " << i << ": " << *bad;
    } else {
      // A full request table refuses with EAGAIN, and the refused call's
      // buffer stays untouched.
      EXPECT_EQ(r.error().code, EAGAIN) << r.error().toString();
      ASSERT_FALSE(buffers[i]->check(""));
    }
  }
  EXPECT_GE(ok, 8u);
  // The connection is still healthy afterwards.
  ScatterBuffer after(1000, 3, rng);
  auto n = small->preadvDirect(*fh, after.iov(), 5);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_FALSE(after.check(content.substr(5, 1000)));
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
