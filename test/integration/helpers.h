// Helpers shared by the integration tests: a fixture that owns a temporary
// export directory, a real zcio-server child process and a connected Client;
// a seeded RNG whose seed is printed (and can be overridden with
// ZCIO_TEST_SEED); scatter buffers with unaligned segments surrounded by
// canary bytes; a bounded completion latch for async calls; and a child
// process runner for the CLI.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fops/client.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::itest {

inline constexpr uint8_t kCanary = 0xA5;

// True when the suite runs over rdma:// (ZCIO_TEST_TRANSPORT=rdma).
bool rdmaUnderTest();
// The most bytes a *direct* call of `size` bytes may copy: 0 on TCP; on RDMA
// small transfers go inline in the SEND and are copied (DESIGN.md,
// registration policy), so up to 4 KiB may be.
uint64_t directCopyAllowance(uint64_t size);

// The test's seed: ZCIO_TEST_SEED if set, else `fallback`. Printed in the log
// and recorded as a gtest property so a failure can be replayed.
uint64_t testSeed(uint64_t fallback);

// A string of `size` pseudo-random bytes.
std::string randomBytes(size_t size, std::mt19937_64& rng);

// `total` bytes spread over `segments` iovecs of random (unaligned) sizes,
// starting 1..7 bytes past an aligned address, with 1..15 canary bytes
// between segments and 16 after the last one. Every byte not yet written by
// zcio is kCanary.
class ScatterBuffer {
 public:
  ScatterBuffer(size_t total, size_t segments, std::mt19937_64& rng);

  const std::vector<iovec>& iov() const { return iov_; }
  size_t total() const { return total_; }
  // Copies `data` (total() bytes) into the segments (the source of a write).
  void fill(const std::string& data);
  // The first `n` logical bytes, gathered from the segments.
  std::string gather(size_t n) const;
  // Checks: logical bytes [0, expected.size()) equal `expected`; every other
  // byte of the storage (logical bytes past it, the gaps, the lead and the
  // tail) is still kCanary. Returns a description of the first mismatch.
  std::optional<std::string> check(const std::string& expected) const;
  // Like check(""), for a direct read that failed part-way: each data byte
  // is either still kCanary or the byte `expected` (the full request's
  // data) has there; everything outside the segments is kCanary.
  std::optional<std::string> checkPartial(const std::string& expected) const;
  std::string shape() const;  // "3 segs [10,4000,7] +lead 5"

 private:
  std::vector<uint8_t> storage_;
  std::vector<size_t> starts_;  // storage offset of each segment
  std::vector<iovec> iov_;
  size_t total_ = 0;
  size_t lead_ = 0;
};

// Waits for N async completions with a deadline, collecting their results.
class Latch {
 public:
  explicit Latch(size_t expected) : results_(expected), done_(expected, false) {}
  fops::Client::IoCallback callback(size_t index);
  // False if not all completed within `limit`.
  bool wait(std::chrono::milliseconds limit);
  const Result<size_t>& result(size_t index) const { return *results_[index]; }
  size_t completed() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<std::optional<Result<size_t>>> results_;
  std::vector<bool> done_;
  size_t count_ = 0;
  size_t duplicates_ = 0;

 public:
  size_t duplicates() const {
    std::lock_guard lock(mutex_);
    return duplicates_;
  }
};

// A temp export directory, a real server process on it, and one client.
class ServerFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Stops the server and asserts a clean (status 0) SIGTERM exit; the test
  // calls it at its end.
  void stopServerCleanly();
  std::unique_ptr<fops::Client> connect(fops::ClientOptions options = {});

  std::unique_ptr<test::TempDir> dir_;
  std::unique_ptr<test::ServerProcess> server_;
  std::unique_ptr<fops::Client> client_;
};

// SIGSTOPs / SIGCONTs a child by PID; pauseProcess returns once every
// thread of it is stopped (so nothing it does races the caller).
bool pauseProcess(pid_t pid);
bool resumeProcess(pid_t pid);

// Runs `argv` (argv[0] is a path) with a deadline; collects stdout. The child
// is killed by its PID if it overruns. exit_status: the exit code, or
// 128+signal, or -1 if it timed out.
struct CommandResult {
  int exit_status = -1;
  std::string out;
};
CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::seconds limit);

// "key":NUMBER or "key":"STRING" from one JSON line; nullopt if absent.
std::optional<std::string> jsonField(const std::string& line, const std::string& key);

std::string sha256Hex(const std::string& data);

}  // namespace zcio::itest
