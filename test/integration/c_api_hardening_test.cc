// The C API (fops/zcio.h) against a caller that gets things wrong: bad
// iovecs fail one call with EFAULT/EINVAL, stale and made-up handles fail
// with EBADF instead of touching freed memory, zcio_disconnect under calls
// in other threads ends them with an error, and overlong paths are
// ENAMETOOLONG on a connection that stays usable.
#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <future>
#include <thread>
#include <vector>

#include "fops/zcio.h"
#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

using namespace std::chrono_literals;
constexpr size_t kFileSize = 128 * 1024;

class CApiHardening : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    content_ = test::writeRandomFile(dir_->file("f.bin"), kFileSize, testSeed(0xc4a10001));
  }

  // A direct read on `fd` returns the file's bytes.
  void expectUsable(zcio_fd_t* fd, const std::string& after) {
    std::string buf(kFileSize, '\0');
    iovec v{buf.data(), buf.size()};
    ssize_t n = zcio_preadv_direct(fd, &v, 1, 0);
    ASSERT_EQ(n, static_cast<ssize_t>(kFileSize))
        << "after " << after << ": " << std::strerror(errno);
    EXPECT_TRUE(buf == content_) << "after " << after;
  }

  std::string content_;
};

using CFn = ssize_t (*)(zcio_fd_t*, const struct iovec*, int, off_t);
struct CVariant {
  const char* name;
  CFn fn;
};
constexpr CVariant kVariants[] = {{"zcio_preadv", zcio_preadv},
                                  {"zcio_preadv_direct", zcio_preadv_direct},
                                  {"zcio_pwritev", zcio_pwritev},
                                  {"zcio_pwritev_direct", zcio_pwritev_direct}};

TEST_F(CApiHardening, NullBaseIsEfaultOnEveryCallAndTheConnectionLives) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDWR, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  char good[16];
  // What preadv(2) would fault on: a NULL base with 4096 bytes.
  iovec iov[2] = {{good, sizeof good}, {nullptr, 4096}};
  for (const auto& v : kVariants) {
    errno = 0;
    EXPECT_EQ(v.fn(fd, iov, 2, 0), -1) << v.name;
    EXPECT_EQ(errno, EFAULT) << v.name << ": " << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(expectUsable(fd, v.name));
  }
  EXPECT_TRUE(test::readLocalFile(dir_->file("f.bin")) == content_);
  EXPECT_EQ(zcio_close(fd), 0) << std::strerror(errno);
  EXPECT_EQ(zcio_disconnect(c), 0);
}

TEST_F(CApiHardening, BadCountsLengthsAndOffsetsAreEinval) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDWR, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  char good[16];
  std::vector<iovec> many(IOV_MAX + 1, iovec{good, 1});
  iovec overflow[2] = {{good, SIZE_MAX / 2 + 1}, {good, SIZE_MAX / 2 + 1}};
  iovec one{good, sizeof good};
  for (const auto& v : kVariants) {
    errno = 0;
    EXPECT_EQ(v.fn(fd, &one, -1, 0), -1);
    EXPECT_EQ(errno, EINVAL) << v.name << " iovcnt -1";
    errno = 0;
    EXPECT_EQ(v.fn(fd, many.data(), static_cast<int>(many.size()), 0), -1);
    EXPECT_EQ(errno, EINVAL) << v.name << " iovcnt IOV_MAX + 1";
    errno = 0;
    EXPECT_EQ(v.fn(fd, overflow, 2, 0), -1);
    EXPECT_EQ(errno, EINVAL) << v.name << " lengths overflowing";
    errno = 0;
    EXPECT_EQ(v.fn(fd, &one, 1, -1), -1);
    EXPECT_EQ(errno, EINVAL) << v.name << " offset -1";
  }
  ASSERT_NO_FATAL_FAILURE(expectUsable(fd, "the refused calls"));
  EXPECT_EQ(zcio_close(fd), 0);
  EXPECT_EQ(zcio_disconnect(c), 0);
}

TEST_F(CApiHardening, DoubleCloseAndUseAfterCloseAreEbadf) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDONLY, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  ASSERT_EQ(zcio_close(fd), 0) << std::strerror(errno);
  errno = 0;
  EXPECT_EQ(zcio_close(fd), -1);
  EXPECT_EQ(errno, EBADF);
  char buf[64];
  iovec v{buf, sizeof buf};
  for (const auto& variant : kVariants) {
    errno = 0;
    EXPECT_EQ(variant.fn(fd, &v, 1, 0), -1) << variant.name;
    EXPECT_EQ(errno, EBADF) << variant.name;
  }
  errno = 0;
  EXPECT_EQ(zcio_fsync(fd), -1);
  EXPECT_EQ(errno, EBADF);
  // The slot is reused by the next open, under a new handle value: the old
  // one still fails and the new one works.
  zcio_fd_t* again = zcio_open(c, "f.bin", O_RDONLY, 0);
  ASSERT_NE(again, nullptr) << std::strerror(errno);
  EXPECT_NE(again, fd);
  errno = 0;
  EXPECT_EQ(zcio_preadv(fd, &v, 1, 0), -1);
  EXPECT_EQ(errno, EBADF);
  ASSERT_NO_FATAL_FAILURE(expectUsable(again, "a double close"));
  // A made-up handle, and a file handle passed as a client.
  errno = 0;
  EXPECT_EQ(zcio_fsync(reinterpret_cast<zcio_fd_t*>(uintptr_t{0xdeadbeef0})), -1);
  EXPECT_EQ(errno, EBADF);
  struct stat st {};
  errno = 0;
  EXPECT_EQ(zcio_stat(reinterpret_cast<zcio_client_t*>(again), "f.bin", &st), -1);
  EXPECT_EQ(errno, EBADF);
  EXPECT_EQ(zcio_close(again), 0);
  EXPECT_EQ(zcio_disconnect(c), 0);
}

TEST_F(CApiHardening, UseAfterDisconnectIsEbadf) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDWR, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  ASSERT_EQ(zcio_disconnect(c), 0);

  struct stat st {};
  struct zcio_stats stats {};
  char buf[64];
  iovec v{buf, sizeof buf};
  auto expectBadf = [](int rc, const char* what) {
    EXPECT_EQ(rc, -1) << what;
    EXPECT_EQ(errno, EBADF) << what << ": " << std::strerror(errno);
  };
  errno = 0;
  expectBadf(zcio_stat(c, "f.bin", &st), "zcio_stat");
  errno = 0;
  EXPECT_EQ(zcio_open(c, "f.bin", O_RDONLY, 0), nullptr);
  EXPECT_EQ(errno, EBADF) << "zcio_open";
  errno = 0;
  expectBadf(zcio_get_stats(c, &stats), "zcio_get_stats");
  errno = 0;
  expectBadf(zcio_register_memory(c, buf, sizeof buf), "zcio_register_memory");
  // Its files went with it.
  for (const auto& variant : kVariants) {
    errno = 0;
    expectBadf(static_cast<int>(variant.fn(fd, &v, 1, 0)), variant.name);
  }
  errno = 0;
  expectBadf(zcio_fsync(fd), "zcio_fsync");
  errno = 0;
  expectBadf(zcio_set_file_options(fd, 0, 0), "zcio_set_file_options");
  errno = 0;
  expectBadf(zcio_close(fd), "zcio_close");
  errno = 0;
  expectBadf(zcio_disconnect(c), "a second zcio_disconnect");

  // A new client works, and the old handle still does not.
  zcio_client_t* d = zcio_connect(server_->url().c_str());
  ASSERT_NE(d, nullptr) << std::strerror(errno);
  EXPECT_NE(d, c);
  errno = 0;
  expectBadf(zcio_stat(c, "f.bin", &st), "the old handle after a new connect");
  EXPECT_EQ(zcio_stat(d, "f.bin", &st), 0) << std::strerror(errno);
  EXPECT_EQ(zcio_disconnect(d), 0);
}

TEST_F(CApiHardening, DisconnectWhileFourThreadsCallEndsEveryCall) {
  constexpr int kRounds = 20;
  constexpr int kThreads = 4;
  struct zcio_options options;
  zcio_options_init(&options);
  options.timeout_ms = 20000;  // a call that hung would end here, failing the bound below
  int calls_ended_by_disconnect = 0;
  for (int round = 0; round < kRounds; ++round) {
    zcio_client_t* c = zcio_connect_with(server_->url().c_str(), &options);
    ASSERT_NE(c, nullptr) << std::strerror(errno);
    zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDWR, 0);
    ASSERT_NE(fd, nullptr) << std::strerror(errno);
    std::atomic<int> started{0};
    std::vector<std::future<int>> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.push_back(std::async(std::launch::async, [&, t] {
        std::vector<char> buf(64 * 1024);
        iovec v{buf.data(), buf.size()};
        struct stat st {};
        started.fetch_add(1);
        // Calls until one fails; returns its errno.
        for (int i = 0;; ++i) {
          ssize_t rc;
          switch ((t + i) % 5) {
            case 0:
              rc = zcio_preadv(fd, &v, 1, 0);
              break;
            case 1:
              rc = zcio_preadv_direct(fd, &v, 1, 0);
              break;
            case 2:
              rc = zcio_pwritev_direct(fd, &v, 1, kFileSize);
              break;
            case 3:
              rc = zcio_pwritev(fd, &v, 1, kFileSize);
              break;
            default:
              rc = zcio_stat(c, "f.bin", &st);
              break;
          }
          if (rc < 0) return errno;
        }
      }));
    }
    while (started.load() < kThreads) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + round % 7));
    ASSERT_EQ(zcio_disconnect(c), 0) << std::strerror(errno);
    for (auto& w : workers) {
      ASSERT_EQ(w.wait_for(10s), std::future_status::ready)
          << "round " << round << ": a call did not return after zcio_disconnect";
      int err = w.get();
      EXPECT_TRUE(err == ENOTCONN || err == EBADF)
          << "round " << round << ": " << std::strerror(err);
      if (err == ENOTCONN) ++calls_ended_by_disconnect;
    }
    errno = 0;
    EXPECT_EQ(zcio_close(fd), -1);
    EXPECT_EQ(errno, EBADF);
  }
  std::printf("calls in progress ended by zcio_disconnect (ENOTCONN): %d of %d\n",
              calls_ended_by_disconnect, kRounds * kThreads);
  // The server took all of it: a new client works.
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  struct stat st {};
  EXPECT_EQ(zcio_stat(c, "f.bin", &st), 0) << std::strerror(errno);
  EXPECT_EQ(zcio_disconnect(c), 0);
  stopServerCleanly();
}

TEST_F(CApiHardening, OverlongPathsAreEnametoolongAndTheConnectionLives) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);
  zcio_fd_t* fd = zcio_open(c, "f.bin", O_RDONLY, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  // 65,524: the reply used to repeat the path past the header limit and end
  // the connection; 65,531: the call itself no longer fits a header.
  for (size_t length : {size_t{65524}, size_t{65531}}) {
    std::string path(length, 'n');
    errno = 0;
    EXPECT_EQ(zcio_open(c, path.c_str(), O_RDONLY, 0), nullptr);
    EXPECT_EQ(errno, ENAMETOOLONG) << length << ": " << std::strerror(errno);
    struct stat st {};
    errno = 0;
    EXPECT_EQ(zcio_stat(c, path.c_str(), &st), -1);
    EXPECT_EQ(errno, ENAMETOOLONG) << length << ": " << std::strerror(errno);
    ASSERT_EQ(zcio_stat(c, "f.bin", &st), 0)
        << "after a " << length << "-byte path: " << std::strerror(errno);
    ASSERT_NO_FATAL_FAILURE(expectUsable(fd, std::to_string(length) + "-byte path"));
  }
  EXPECT_EQ(zcio_close(fd), 0);
  EXPECT_EQ(zcio_disconnect(c), 0);
}

}  // namespace
}  // namespace zcio::itest
