#include "test/integration/helpers.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <thread>

#include "tools/transfer.h"

namespace zcio::itest {

bool rdmaUnderTest() {
  return test::transportUnderTest() == "rdma";
}

uint64_t directCopyAllowance(uint64_t size) {
  return rdmaUnderTest() && size <= 4096 ? size : 0;
}

uint64_t testSeed(uint64_t fallback) {
  uint64_t seed = fallback;
  if (const char* env = std::getenv("ZCIO_TEST_SEED"); env != nullptr && *env != '\0') {
    seed = std::strtoull(env, nullptr, 0);
  }
  std::printf("[ seed     ] %llu (replay with ZCIO_TEST_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::fflush(stdout);
  ::testing::Test::RecordProperty("seed", std::to_string(seed));
  return seed;
}

std::string randomBytes(size_t size, std::mt19937_64& rng) {
  std::string data(size, '\0');
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t v = rng();
    std::memcpy(data.data() + i, &v, 8);
  }
  for (; i < size; ++i) data[i] = static_cast<char>(rng());
  return data;
}

// ---- ScatterBuffer ------------------------------------------------------

ScatterBuffer::ScatterBuffer(size_t total, size_t segments, std::mt19937_64& rng) : total_(total) {
  if (segments == 0) segments = 1;
  // Cut points: segment sizes are random and unaligned (zero-length segments
  // happen when cuts coincide, as preadv(2) allows).
  std::vector<size_t> cuts;
  cuts.push_back(0);
  for (size_t i = 1; i < segments; ++i) cuts.push_back(total == 0 ? 0 : rng() % (total + 1));
  cuts.push_back(total);
  std::sort(cuts.begin(), cuts.end());
  std::vector<size_t> gaps(segments);
  size_t gap_total = 0;
  for (auto& g : gaps) {
    g = 1 + rng() % 15;
    gap_total += g;
  }
  lead_ = 1 + rng() % 7;
  // Over-allocate by 64 to pick an address that is lead_ bytes past a
  // 64-byte boundary: never aligned.
  storage_.assign(64 + lead_ + total + gap_total + 16, kCanary);
  size_t base = (64 - reinterpret_cast<uintptr_t>(storage_.data()) % 64) % 64;
  size_t at = base + lead_;
  for (size_t i = 0; i < segments; ++i) {
    size_t len = cuts[i + 1] - cuts[i];
    starts_.push_back(at);
    iov_.push_back(iovec{storage_.data() + at, len});
    at += len + gaps[i];
  }
}

void ScatterBuffer::fill(const std::string& data) {
  size_t pos = 0;
  for (size_t i = 0; i < iov_.size(); ++i) {
    std::memcpy(iov_[i].iov_base, data.data() + pos, iov_[i].iov_len);
    pos += iov_[i].iov_len;
  }
}

std::string ScatterBuffer::gather(size_t n) const {
  std::string out;
  out.reserve(n);
  for (const auto& v : iov_) {
    if (out.size() >= n) break;
    size_t take = std::min(v.iov_len, n - out.size());
    out.append(static_cast<const char*>(v.iov_base), take);
  }
  return out;
}

std::optional<std::string> ScatterBuffer::check(const std::string& expected) const {
  if (expected.size() > total_) return "expected more bytes than the buffer holds";
  // Mark which storage bytes carry data.
  size_t logical = 0;
  size_t cursor = 0;  // storage offset up to which canary was verified
  auto canaryUpTo = [&](size_t end) -> std::optional<std::string> {
    for (size_t p = cursor; p < end; ++p) {
      if (storage_[p] != kCanary) {
        std::ostringstream os;
        os << "byte outside the data at storage offset " << p << " changed to 0x" << std::hex
           << int(storage_[p]) << " (" << shape() << ")";
        return os.str();
      }
    }
    cursor = end;
    return std::nullopt;
  };
  for (size_t i = 0; i < iov_.size(); ++i) {
    if (auto bad = canaryUpTo(starts_[i])) return bad;
    size_t len = iov_[i].iov_len;
    size_t data = logical < expected.size() ? std::min(len, expected.size() - logical) : 0;
    const uint8_t* seg = storage_.data() + starts_[i];
    if (data > 0 && std::memcmp(seg, expected.data() + logical, data) != 0) {
      for (size_t k = 0; k < data; ++k) {
        if (seg[k] != static_cast<uint8_t>(expected[logical + k])) {
          std::ostringstream os;
          os << "data mismatch at logical byte " << logical + k << " (segment " << i << " offset "
             << k << "): got 0x" << std::hex << int(seg[k]) << " want 0x"
             << int(static_cast<uint8_t>(expected[logical + k])) << std::dec << " (" << shape()
             << ")";
          return os.str();
        }
      }
    }
    cursor = starts_[i] + data;
    if (auto bad = canaryUpTo(starts_[i] + len)) {
      return *bad + " [past the returned count: logical byte " +
             std::to_string(logical + (cursor - starts_[i])) + "]";
    }
    logical += len;
  }
  return canaryUpTo(storage_.size());
}

std::optional<std::string> ScatterBuffer::checkPartial(const std::string& expected) const {
  if (expected.size() != total_) return "checkPartial needs the full expected data";
  size_t logical = 0;
  size_t cursor = 0;
  for (size_t i = 0; i < iov_.size(); ++i) {
    for (size_t p = cursor; p < starts_[i]; ++p) {
      if (storage_[p] != kCanary)
        return "byte outside the segments at " + std::to_string(p) + " changed";
    }
    const uint8_t* seg = storage_.data() + starts_[i];
    for (size_t k = 0; k < iov_[i].iov_len; ++k) {
      uint8_t want = static_cast<uint8_t>(expected[logical + k]);
      if (seg[k] != kCanary && seg[k] != want) {
        return "logical byte " + std::to_string(logical + k) + " is neither canary nor file data";
      }
    }
    logical += iov_[i].iov_len;
    cursor = starts_[i] + iov_[i].iov_len;
  }
  for (size_t p = cursor; p < storage_.size(); ++p) {
    if (storage_[p] != kCanary)
      return "byte past the last segment at " + std::to_string(p) + " changed";
  }
  return std::nullopt;
}

std::string ScatterBuffer::shape() const {
  std::ostringstream os;
  os << iov_.size() << " segs [";
  for (size_t i = 0; i < iov_.size() && i < 8; ++i) os << (i ? "," : "") << iov_[i].iov_len;
  if (iov_.size() > 8) os << ",...";
  os << "] lead " << lead_ << " total " << total_;
  return os.str();
}

// ---- Latch ---------------------------------------------------------------

fops::Client::IoCallback Latch::callback(size_t index) {
  return [this, index](Result<size_t> r) {
    std::lock_guard lock(mutex_);
    if (done_[index]) {
      ++duplicates_;
      return;
    }
    done_[index] = true;
    results_[index] = std::move(r);
    ++count_;
    cv_.notify_all();
  };
}

bool Latch::wait(std::chrono::milliseconds limit) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, limit, [&] { return count_ == results_.size(); });
}

size_t Latch::completed() const {
  std::lock_guard lock(mutex_);
  return count_;
}

// ---- ServerFixture -------------------------------------------------------

void ServerFixture::SetUp() {
  dir_ = std::make_unique<test::TempDir>();
  server_ = std::make_unique<test::ServerProcess>(dir_->path());
  auto client = fops::Client::connect(server_->url());
  ASSERT_TRUE(client) << client.error().toString();
  client_ = std::move(*client);
}

void ServerFixture::TearDown() {
  // A test that failed while the server was paused must not leave it
  // stopped (SIGTERM would wait on it).
  if (server_ && server_->alive()) resumeProcess(server_->pid());
  client_.reset();
  if (server_ && HasFailure())
    std::fprintf(stderr, "--- server log ---\n%s\n", server_->log().c_str());
  server_.reset();
  dir_.reset();
}

void ServerFixture::stopServerCleanly() {
  int status = server_->stop();
  ASSERT_EQ(status, 0) << "server did not exit cleanly on SIGTERM (or died earlier); log:\n"
                       << server_->log();
}

std::unique_ptr<fops::Client> ServerFixture::connect(fops::ClientOptions options) {
  auto client = fops::Client::connect(server_->url(), options);
  EXPECT_TRUE(client) << client.error().toString();
  if (!client) return nullptr;
  return std::move(*client);
}

// ---- processes -------------------------------------------------------------

namespace {
// The state letter of every thread of `pid` (from /proc/PID/task/*/stat).
std::string threadStates(pid_t pid) {
  std::string states;
  std::error_code ec;
  for (const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
    std::string stat = test::readLocalFile(entry.path().string() + "/stat");
    size_t close = stat.rfind(')');
    if (close != std::string::npos && close + 2 < stat.size()) states.push_back(stat[close + 2]);
  }
  return states;
}
}  // namespace

bool pauseProcess(pid_t pid) {
  if (kill(pid, SIGSTOP) != 0) return false;
  for (int i = 0; i < 2000; ++i) {
    std::string states = threadStates(pid);
    if (!states.empty() && states.find_first_not_of("tT") == std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

bool resumeProcess(pid_t pid) {
  return kill(pid, SIGCONT) == 0;
}

CommandResult runCommand(const std::vector<std::string>& argv, std::chrono::seconds limit) {
  CommandResult result;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return result;
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return result;
  }
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  auto deadline = std::chrono::steady_clock::now() + limit;
  char buf[4096];
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{out[0], POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t n = read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.out.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  if (timed_out) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    result.exit_status = -1;
    return result;
  }
  waitpid(pid, &status, 0);
  result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::optional<std::string> jsonField(const std::string& line, const std::string& key) {
  std::string needle = "\"" + key + "\":";
  size_t pos = line.find(needle);
  if (pos == std::string::npos) return std::nullopt;
  pos += needle.size();
  if (pos < line.size() && line[pos] == '"') {
    size_t end = line.find('"', pos + 1);
    if (end == std::string::npos) return std::nullopt;
    return line.substr(pos + 1, end - pos - 1);
  }
  size_t end = line.find_first_of(",}", pos);
  if (end == std::string::npos) return std::nullopt;
  return line.substr(pos, end - pos);
}

std::string sha256Hex(const std::string& data) {
  tools::Sha256 sha;
  sha.update(data.data(), data.size());
  return sha.hex();
}

}  // namespace zcio::itest
