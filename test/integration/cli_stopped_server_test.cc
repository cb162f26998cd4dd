// `zcio read` and `zcio write` against a server SIGSTOPped in the middle of
// the transfer (TCP): the CLI gives up and exits non-zero within its
// --timeout + 2 s, not after a second timeout for a CLOSE nobody answers.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <thread>

#include "test/integration/helpers.h"

extern char** environ;

namespace zcio::itest {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr uint64_t kBig = 64ull << 30;       // sparse: never fully moved
constexpr uint64_t kProgress = 32ull << 20;  // moved before the stop
constexpr auto kCliTimeout = 2s;             // --timeout
constexpr auto kBound = kCliTimeout + 2s;

// Bytes the process has read with read(2)-like calls (/proc/PID/io rchar).
std::optional<uint64_t> bytesRead(pid_t pid) {
  std::ifstream io("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  uint64_t value = 0;
  while (io >> key >> value) {
    if (key == "rchar:") return value;
  }
  return std::nullopt;
}

bool makeSparse(const std::string& path, uint64_t size) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return false;
  bool ok = ::ftruncate(fd, static_cast<off_t>(size)) == 0;
  ::close(fd);
  return ok;
}

class CliStoppedServer : public ServerFixture {
 protected:
  void TearDown() override {
    if (cli_ > 0) {  // never left running
      ::kill(cli_, SIGKILL);
      ::waitpid(cli_, nullptr, 0);
    }
    if (stopped_) resumeProcess(server_->pid());
    ServerFixture::TearDown();
  }

  void startCli(const std::vector<std::string>& args) {
    std::vector<std::string> argv{ZCIO_CLI_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    std::vector<char*> raw;
    for (auto& a : argv) raw.push_back(a.data());
    raw.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    log_ = dir_->file("cli.log");
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    int rc = posix_spawn(&cli_, raw[0], &actions, nullptr, raw.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "posix_spawn: " << std::strerror(rc);
  }

  std::string cliLog() { return test::readLocalFile(log_); }

  // True if the CLI has exited (status in *status).
  bool exited(int* status) { return ::waitpid(cli_, status, WNOHANG) == cli_; }

  // Waits for `progressed`, SIGSTOPs the server, then times the CLI's exit.
  void stopMidTransferAndExpectExit(const std::function<bool()>& progressed) {
    int status = 0;
    auto give_up = Clock::now() + 60s;
    while (!progressed()) {
      ASSERT_FALSE(exited(&status)) << "the CLI ended before the stop:\n" << cliLog();
      ASSERT_LT(Clock::now(), give_up) << "no progress in 60 s:\n" << cliLog();
      std::this_thread::sleep_for(2ms);
    }
    ASSERT_TRUE(pauseProcess(server_->pid())) << "server did not stop";
    stopped_ = true;
    auto t0 = Clock::now();
    ASSERT_FALSE(exited(&status)) << "the transfer finished before the stop; enlarge kBig";
    bool done = false;
    while (Clock::now() - t0 < kBound + 10s) {
      if (exited(&status)) {
        done = true;
        break;
      }
      std::this_thread::sleep_for(5ms);
    }
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    std::string log = cliLog();
    ASSERT_TRUE(done) << "the CLI still runs " << took.count() << " ms after the stop:\n" << log;
    cli_ = -1;
    std::printf("CLI exited %d ms after the server stopped (--timeout %lld s)\n",
                static_cast<int>(took.count()), static_cast<long long>(kCliTimeout.count()));
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0) << "status " << status << "\n"
                                                               << log;
    EXPECT_LE(took, kBound) << log;
    resumeProcess(server_->pid());
    stopped_ = false;
  }

  pid_t cli_ = -1;
  bool stopped_ = false;
  std::string log_;
};

std::string seconds(std::chrono::seconds s) {
  return std::to_string(s.count());
}

TEST_F(CliStoppedServer, ReadExitsWithinItsTimeoutPlusTwoSeconds) {
  ASSERT_TRUE(makeSparse(dir_->file("big"), kBig));
  auto before = bytesRead(server_->pid());
  if (!before) GTEST_SKIP() << "/proc/" << server_->pid() << "/io is not readable here";
  ASSERT_NO_FATAL_FAILURE(
      startCli({"read", "--timeout", seconds(kCliTimeout), server_->tcpUrl() + "/big"}));
  ASSERT_NO_FATAL_FAILURE(stopMidTransferAndExpectExit([&] {
    auto now = bytesRead(server_->pid());
    return now && *now - *before >= kProgress;
  }));
}

TEST_F(CliStoppedServer, WriteExitsWithinItsTimeoutPlusTwoSeconds) {
  std::string local = dir_->file("source");
  ASSERT_TRUE(makeSparse(local, kBig));
  ASSERT_NO_FATAL_FAILURE(
      startCli({"write", "--timeout", seconds(kCliTimeout), local, server_->tcpUrl() + "/copy"}));
  ASSERT_NO_FATAL_FAILURE(stopMidTransferAndExpectExit([&] {
    struct stat st {};
    return ::stat(dir_->file("copy").c_str(), &st) == 0 &&
           static_cast<uint64_t>(st.st_size) >= kProgress;
  }));
}

}  // namespace
}  // namespace zcio::itest
