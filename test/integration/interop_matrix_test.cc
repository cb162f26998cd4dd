// The interop matrix: every combination of a writer's mode (regular without
// write-behind, regular with write-behind, direct) and a reader's mode
// (regular without the io-cache, regular with it, direct), on two clients of
// one file and on one connection, against a real server. Same wire protocol
// in every cell; every byte read is compared with an in-memory model, in both
// directions, and also while the two write and read at the same time.
//
// The hand-off between two clients is the documented one: the writer fsyncs
// (write-behind data is visible to others after fsync), the reader fstats
// (the io-cache drops a file's pages when size or mtime changed). mtime has
// the file system's timestamp granularity (a kernel tick), as with NFS, so
// the test waits 20 ms before each writing phase. On one connection nothing
// is needed: a client sees its own writes at once, whatever the modes.
//
// The rdma.* copies of these entries run the same matrix over rdma:// in the
// Soft-RoCE guest.
#include <fcntl.h>

#include <ostream>
#include <random>
#include <thread>
#include <tuple>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

constexpr uint64_t KiB = 1024;
constexpr uint64_t kFileSize = 512 * KiB;

enum class Writer { kRegular, kWriteBehind, kDirect };
enum class Reader { kRegular, kIoCache, kDirect };
enum class Topology { kTwoClients, kOneConnection };
using Cell = std::tuple<Writer, Reader, Topology>;

const char* kWriters[] = {"RegularWriter", "WriteBehindWriter", "DirectWriter"};
const char* kReaders[] = {"RegularReader", "CachedReader", "DirectReader"};
const char* kTopologies[] = {"TwoClients", "OneConnection"};

// Readable parameters in test listings.
void PrintTo(Writer w, std::ostream* os) {
  *os << kWriters[static_cast<int>(w)];
}
void PrintTo(Reader r, std::ostream* os) {
  *os << kReaders[static_cast<int>(r)];
}
void PrintTo(Topology t, std::ostream* os) {
  *os << kTopologies[static_cast<int>(t)];
}

std::string cellName(const ::testing::TestParamInfo<Cell>& info) {
  auto [w, r, t] = info.param;
  return std::string(kWriters[static_cast<int>(w)]) + "_" + kReaders[static_cast<int>(r)] + "_" +
         kTopologies[static_cast<int>(t)];
}

// One side of a cell: a client (maybe shared), its file handle, and whether
// it moves data directly.
struct Side {
  fops::Client* client = nullptr;
  fops::FileHandle fh = 0;
  bool direct = false;
};

class InteropMatrix : public ServerFixture, public ::testing::WithParamInterface<Cell> {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    auto [writer, reader, topology] = GetParam();
    writer_ = writer;
    reader_ = reader;
    two_clients_ = topology == Topology::kTwoClients;
    rng_.seed(testSeed(0x1a7e0000 + static_cast<uint64_t>(writer) * 16 +
                       static_cast<uint64_t>(reader) * 4 + static_cast<uint64_t>(topology)));
    model_ = test::writeRandomFile(dir_->file("shared.bin"), kFileSize, rng_());

    // Direct modes run on clients whose caching layers are on: they must
    // bypass them (and purge / wait for them), not merely avoid them.
    fops::ClientOptions wo;
    wo.write_behind = writer != Writer::kRegular;
    wo.io_cache_bytes = writer == Writer::kDirect ? 256 * KiB : 0;
    fops::ClientOptions ro;
    ro.io_cache_bytes = reader != Reader::kRegular ? 256 * KiB : 0;  // half the file: evictions
    ro.write_behind = reader == Reader::kDirect;
    for (auto* o : {&wo, &ro}) {
      o->write_behind_aggregate_bytes = 64 * KiB;
      o->write_behind_delay = std::chrono::milliseconds(60000);  // only fsync/caps send
    }
    if (two_clients_) {
      a_ = connect(wo);
      b_ = connect(ro);
    } else {
      fops::ClientOptions both = wo;
      both.io_cache_bytes = std::max(wo.io_cache_bytes, ro.io_cache_bytes);
      both.write_behind = wo.write_behind || ro.write_behind;
      a_ = connect(both);
    }
    ASSERT_TRUE(a_);
    auto fa = a_->open("shared.bin", O_RDWR);
    ASSERT_TRUE(fa) << fa.error().toString();
    writer_side_ = Side{a_.get(), *fa, writer == Writer::kDirect};
    fops::Client* rc = two_clients_ ? b_.get() : a_.get();
    ASSERT_NE(rc, nullptr);
    auto fb = rc->open("shared.bin", O_RDWR);
    ASSERT_TRUE(fb) << fb.error().toString();
    reader_side_ = Side{rc, *fb, reader == Reader::kDirect};
  }

  // Writes `len` random bytes at `off` through `side` in random iov shapes.
  void write(const Side& side, uint64_t off, uint64_t len) {
    std::string data = randomBytes(len, rng_);
    ScatterBuffer src(len, 1 + rng_() % 6, rng_);
    src.fill(data);
    auto n = side.direct ? side.client->pwritevDirect(side.fh, src.iov(), off)
                         : side.client->pwritev(side.fh, src.iov(), off);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, len);
    if (model_.size() < off + len) model_.resize(off + len, '\0');
    model_.replace(off, len, data);
  }

  // Reads [off, off + len) through `side` and compares with the model (a
  // short count at EOF, canaries untouched past it).
  void readAndCheck(const Side& side, uint64_t off, uint64_t len, const char* what) {
    ScatterBuffer dst(len, 1 + rng_() % 6, rng_);
    auto n = side.direct ? side.client->preadvDirect(side.fh, dst.iov(), off)
                         : side.client->preadv(side.fh, dst.iov(), off);
    ASSERT_TRUE(n) << what << ": " << n.error().toString();
    std::string want = off < model_.size() ? model_.substr(off, len) : std::string();
    ASSERT_EQ(*n, want.size()) << what << " at " << off << "+" << len;
    auto bad = dst.check(want);
    ASSERT_FALSE(bad) << what << " at " << off << "+" << len << " (" << dst.shape()
                      << "): " << *bad;
  }

  std::pair<uint64_t, uint64_t> randomRange(uint64_t limit) {
    uint64_t off = rng_() % limit;
    uint64_t len = rng_() % 3 == 0 ? 1 + rng_() % (128 * KiB) : 1 + rng_() % (8 * KiB);
    return {off, len};
  }

  // The two-client hand-off: `from` makes its writes visible, `to`
  // revalidates. Nothing is needed on one connection.
  void handOff(const Side& from, const Side& to) {
    if (!two_clients_) return;
    ASSERT_TRUE(from.client->fsync(from.fh));
    ASSERT_TRUE(to.client->fstat(to.fh));
  }
  void beforeWriting() {
    if (two_clients_) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  void verifyWholeFile(const Side& side, const char* what) {
    readAndCheck(side, 0, model_.size() + 4 * KiB, what);
  }

  Writer writer_{};
  Reader reader_{};
  bool two_clients_ = true;
  std::mt19937_64 rng_;
  std::string model_;
  std::unique_ptr<fops::Client> a_, b_;
  Side writer_side_, reader_side_;
};

TEST_P(InteropMatrix, EveryByteMatchesInBothDirectionsAndConcurrently) {
  // The reader warms up first, so a cache it has holds what is overwritten.
  verifyWholeFile(reader_side_, "reader, before any write");
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    beforeWriting();
    for (int i = 0; i < 10; ++i) {
      // Some writes go past EOF: the size changes, holes read as zeros.
      auto [off, len] = randomRange(model_.size() + (round == 2 ? 64 * KiB : 0));
      ASSERT_NO_FATAL_FAILURE(write(writer_side_, off, len));
    }
    ASSERT_NO_FATAL_FAILURE(handOff(writer_side_, reader_side_));
    for (int i = 0; i < 8; ++i) {
      auto [off, len] = randomRange(model_.size() + 8 * KiB);
      ASSERT_NO_FATAL_FAILURE(readAndCheck(reader_side_, off, len, "reader"));
    }
    ASSERT_NO_FATAL_FAILURE(verifyWholeFile(reader_side_, "reader, whole file"));

    // The other way: the reader's client writes in its own mode, the
    // writer's client reads in its own.
    beforeWriting();
    for (int i = 0; i < 4; ++i) {
      auto [off, len] = randomRange(model_.size());
      ASSERT_NO_FATAL_FAILURE(write(reader_side_, off, len));
    }
    ASSERT_NO_FATAL_FAILURE(handOff(reader_side_, writer_side_));
    ASSERT_NO_FATAL_FAILURE(verifyWholeFile(writer_side_, "writer, whole file"));
  }

  // At the same time: the writer rewrites the first half while the reader
  // reads the second half (disjoint pages), on two threads.
  const uint64_t size = model_.size();
  const uint64_t half = (size / 2) & ~(4 * KiB - 1);
  const std::string second_half = model_.substr(half);
  std::mt19937_64 reader_rng(rng_());
  std::string failure;
  std::thread reads([&] {
    for (int i = 0; i < 40 && failure.empty(); ++i) {
      uint64_t off = half + reader_rng() % (size - half);
      uint64_t len = 1 + reader_rng() % (32 * KiB);
      std::string buf(len, '\0');
      iovec v{buf.data(), buf.size()};
      auto n = reader_side_.direct
                   ? reader_side_.client->preadvDirect(reader_side_.fh, {&v, 1}, off)
                   : reader_side_.client->preadv(reader_side_.fh, {&v, 1}, off);
      std::string want = second_half.substr(off - half, len);
      if (!n) {
        failure = "concurrent read failed: " + n.error().toString();
      } else if (buf.substr(0, *n) != want) {
        failure = "concurrent read at " + std::to_string(off) + " returned wrong bytes";
      }
    }
  });
  for (int i = 0; i < 20 && !HasFatalFailure(); ++i) {
    uint64_t off = rng_() % half;
    uint64_t len = std::min<uint64_t>(1 + rng_() % (32 * KiB), half - off);
    write(writer_side_, off, len);
  }
  reads.join();
  ASSERT_FALSE(HasFatalFailure());
  ASSERT_TRUE(failure.empty()) << failure;
  ASSERT_NO_FATAL_FAILURE(handOff(writer_side_, reader_side_));
  ASSERT_NO_FATAL_FAILURE(verifyWholeFile(reader_side_, "reader, after the concurrent phase"));
  ASSERT_NO_FATAL_FAILURE(verifyWholeFile(writer_side_, "writer, after the concurrent phase"));

  ASSERT_TRUE(writer_side_.client->close(writer_side_.fh));
  ASSERT_TRUE(reader_side_.client->close(reader_side_.fh));
  EXPECT_EQ(test::readLocalFile(dir_->file("shared.bin")), model_)
      << "the server's file differs from the model";
  // A client that only moved data directly copied nothing, with its
  // caching layers on (on RDMA small payloads ride inline and are copied).
  if (two_clients_ && !rdmaUnderTest()) {
    if (writer_ == Writer::kDirect) {
      EXPECT_EQ(a_->stats().bytes_copied, 0u);
    }
    if (reader_ == Reader::kDirect) {
      EXPECT_EQ(b_->stats().bytes_copied, 0u);
    }
  }
  stopServerCleanly();
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, InteropMatrix,
    ::testing::Combine(::testing::Values(Writer::kRegular, Writer::kWriteBehind, Writer::kDirect),
                       ::testing::Values(Reader::kRegular, Reader::kIoCache, Reader::kDirect),
                       ::testing::Values(Topology::kTwoClients, Topology::kOneConnection)),
    cellName);

}  // namespace
}  // namespace zcio::itest
