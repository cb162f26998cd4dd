// A per-test time limit for every test binary, so that a stall is named in
// the log instead of ending as an anonymous ctest or suite timeout: when one
// test runs past its limit the watchdog prints the test's name, a stack
// dump of every thread of this process and of its child processes (a real
// zcio-server the test started) by running `gdb -batch`, the kernel log's
// tail where readable, and then ends the process with status 124.
//
// ZCIO_TEST_TIME_LIMIT_S sets the limit (default 240 s: below ctest's 300 s
// for the host tests; the guest's suites pass a larger one). 0 disables it.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace zcio::test {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<pid_t> childrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0') continue;
    std::ifstream stat("/proc/" + std::string(e->d_name) + "/stat");
    std::string line;
    std::getline(stat, line);
    // pid (comm) state ppid ...: comm may hold spaces, so parse after ')'.
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    long ppid = 0;
    rest >> state >> ppid;
    if (ppid == parent) out.push_back(static_cast<pid_t>(pid));
  }
  closedir(proc);
  return out;
}

// Runs a command with stdout sent to stderr (the log ctest keeps), killed
// after `limit_s` seconds so the dump itself cannot hang.
void runBounded(const std::string& command, int limit_s) {
  std::string line = "timeout -s KILL " + std::to_string(limit_s) + " " + command + " 1>&2";
  int rc = std::system(line.c_str());
  if (rc != 0) std::fprintf(stderr, "watchdog: `%s` exited with %d\n", command.c_str(), rc);
}

void dumpStacks(pid_t pid, const char* what) {
  std::fprintf(stderr, "\n===== watchdog: stacks of every thread of %s (pid %d) =====\n", what,
               static_cast<int>(pid));
  std::fflush(stderr);
  if (std::system("command -v gdb >/dev/null 2>&1") != 0) {
    std::fprintf(stderr, "watchdog: gdb is not installed: no stack dump\n");
    return;
  }
  runBounded("gdb -nx -batch -p " + std::to_string(pid) +
                 " -ex 'set pagination off' -ex 'thread apply all bt' 2>&1 | grep -v "
                 "'^\\[New LWP\\|^warning: \\|^Using host libthread_db'",
             60);
}

class Watchdog : public ::testing::EmptyTestEventListener {
 public:
  Watchdog() {
    const char* env = std::getenv("ZCIO_TEST_TIME_LIMIT_S");
    limit_ = std::chrono::seconds(env != nullptr ? std::atoi(env) : 240);
    if (limit_.count() <= 0) return;
    // gdb attaches to its own parent: allow it where Yama restricts ptrace.
    prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
    std::thread([this] { watch(); }).detach();
  }

  void OnTestStart(const ::testing::TestInfo& info) override {
    std::lock_guard lock(mutex_);
    name_ = std::string(info.test_suite_name()) + "." + info.name();
    deadline_ = Clock::now() + limit_;
    armed_ = true;
    wake_.notify_all();
  }
  void OnTestEnd(const ::testing::TestInfo&) override {
    std::lock_guard lock(mutex_);
    armed_ = false;
  }

 private:
  void watch() {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (!armed_) {
        wake_.wait(lock);
        continue;
      }
      if (wake_.wait_until(lock, deadline_) == std::cv_status::no_timeout) continue;
      if (!armed_ || Clock::now() < deadline_) continue;
      std::string name = name_;
      lock.unlock();
      expire(name);
    }
  }

  [[noreturn]] void expire(const std::string& name) {
    std::fprintf(stderr,
                 "\n===== watchdog: TEST %s HUNG: still running after its limit of %lld s "
                 "(ZCIO_TEST_TIME_LIMIT_S) =====\n",
                 name.c_str(), static_cast<long long>(limit_.count()));
    dumpStacks(getpid(), ("the test binary, in " + name).c_str());
    for (pid_t child : childrenOf(getpid())) dumpStacks(child, "a child process");
    std::fprintf(stderr, "\n===== watchdog: kernel log tail =====\n");
    std::fflush(stderr);
    runBounded("sh -c 'dmesg 2>/dev/null | tail -n 30'", 10);
    std::fprintf(stderr, "===== watchdog: %s hung; exiting with status 124 =====\n", name.c_str());
    std::fflush(stderr);
    // Children (servers) are stopped by their own parent-death handling or
    // the suite's cleanup; do not run static destructors of a hung process.
    _exit(124);
  }

  std::chrono::seconds limit_{};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::string name_;
  Clock::time_point deadline_{};
  bool armed_ = false;
};

// gtest deletes its listeners at exit while the watch thread still waits:
// the listener forwards to a watchdog that is never freed.
class Forwarder : public ::testing::EmptyTestEventListener {
 public:
  explicit Forwarder(Watchdog* dog) : dog_(dog) {}
  void OnTestStart(const ::testing::TestInfo& info) override { dog_->OnTestStart(info); }
  void OnTestEnd(const ::testing::TestInfo& info) override { dog_->OnTestEnd(info); }

 private:
  Watchdog* dog_;
};

struct Install {
  Install() { ::testing::UnitTest::GetInstance()->listeners().Append(new Forwarder(new Watchdog)); }
};
const Install kInstalled;

}  // namespace
}  // namespace zcio::test
