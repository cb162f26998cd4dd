// The C API (fops/zcio.h) against a real server: the whole call sequence,
// and -1/NULL with errno on every failure.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "fops/zcio.h"
#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

class CApi : public ServerFixture {};

TEST_F(CApi, FullSequenceMovesTheRightBytesAndCountsCopies) {
  std::mt19937_64 rng(testSeed(0xca910001));
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << "zcio_connect: " << std::strerror(errno);

  zcio_fd_t* fd = zcio_open(c, "capi.bin", O_RDWR | O_CREAT | O_TRUNC, 0640);
  ASSERT_NE(fd, nullptr) << "zcio_open: " << std::strerror(errno);

  // pwritev_direct: 3 unaligned segments at offset 0.
  const size_t n1 = 300000;
  std::string a = randomBytes(n1, rng);
  ScatterBuffer wa(n1, 3, rng);
  wa.fill(a);
  ASSERT_EQ(zcio_pwritev_direct(fd, wa.iov().data(), static_cast<int>(wa.iov().size()), 0),
            static_cast<ssize_t>(n1))
      << std::strerror(errno);
  // pwritev (regular): 5 segments right after it.
  const size_t n2 = 70001;
  std::string b = randomBytes(n2, rng);
  ScatterBuffer wb(n2, 5, rng);
  wb.fill(b);
  ASSERT_EQ(zcio_pwritev(fd, wb.iov().data(), static_cast<int>(wb.iov().size()), n1),
            static_cast<ssize_t>(n2))
      << std::strerror(errno);
  ASSERT_EQ(zcio_fsync(fd), 0) << std::strerror(errno);
  const std::string model = a + b;
  ASSERT_TRUE(test::readLocalFile(dir_->file("capi.bin")) == model);

  struct stat st {};
  ASSERT_EQ(zcio_stat(c, "capi.bin", &st), 0) << std::strerror(errno);
  EXPECT_EQ(static_cast<size_t>(st.st_size), model.size());
  EXPECT_TRUE(S_ISREG(st.st_mode));
  mode_t mask = ::umask(0);  // the server inherited ours
  ::umask(mask);
  EXPECT_EQ(st.st_mode & 07777, 0640u & ~mask) << std::oct << st.st_mode;
  struct stat local {};
  ASSERT_EQ(::stat(dir_->file("capi.bin").c_str(), &local), 0);
  EXPECT_EQ(st.st_ino, local.st_ino);
  EXPECT_EQ(st.st_mode, local.st_mode);
  EXPECT_EQ(st.st_mtim.tv_sec, local.st_mtim.tv_sec);
  EXPECT_EQ(st.st_mtim.tv_nsec, local.st_mtim.tv_nsec);

  // preadv_direct across EOF: short count, canary past it.
  ScatterBuffer r1(model.size() + 100, 7, rng);
  ssize_t got = zcio_preadv_direct(fd, r1.iov().data(), static_cast<int>(r1.iov().size()), 0);
  ASSERT_EQ(got, static_cast<ssize_t>(model.size())) << std::strerror(errno);
  auto bad = r1.check(model);
  ASSERT_FALSE(bad) << *bad;

  struct zcio_stats s0 {};
  ASSERT_EQ(zcio_get_stats(c, &s0), 0);
  // preadv (regular) of a middle range: copies exactly what it returns.
  ScatterBuffer r2(12345, 4, rng);
  got = zcio_preadv(fd, r2.iov().data(), static_cast<int>(r2.iov().size()), 1000);
  ASSERT_EQ(got, 12345) << std::strerror(errno);
  bad = r2.check(model.substr(1000, 12345));
  ASSERT_FALSE(bad) << *bad;
  struct zcio_stats s1 {};
  ASSERT_EQ(zcio_get_stats(c, &s1), 0);
  EXPECT_EQ(s1.bytes_copied - s0.bytes_copied, 12345u);
  EXPECT_EQ(s1.bytes_read - s0.bytes_read, 12345u);
  EXPECT_EQ(s1.requests - s0.requests, 1u);
  // Totals so far: regular write n2 + regular read 12345 copied; direct none.
  EXPECT_EQ(s1.bytes_copied, n2 + 12345);
  EXPECT_EQ(s1.bytes_written, n1 + n2);
  EXPECT_EQ(s1.timeouts, 0u);
  EXPECT_EQ(s1.protocol_errors, 0u);

  // Reads at EOF return 0.
  got = zcio_preadv_direct(fd, r2.iov().data(), static_cast<int>(r2.iov().size()),
                           static_cast<off_t>(model.size()));
  EXPECT_EQ(got, 0);

  ASSERT_EQ(zcio_close(fd), 0) << std::strerror(errno);
  ASSERT_EQ(zcio_disconnect(c), 0);
  stopServerCleanly();
}

TEST_F(CApi, ErrorsReturnMinusOneOrNullWithErrno) {
  zcio_client_t* c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr) << std::strerror(errno);

  errno = 0;
  EXPECT_EQ(zcio_open(c, "does/not/exist", O_RDONLY, 0), nullptr);
  EXPECT_EQ(errno, ENOENT);

  struct stat st {};
  errno = 0;
  EXPECT_EQ(zcio_stat(c, "missing.txt", &st), -1);
  EXPECT_EQ(errno, ENOENT);

  // O_EXCL on an existing file.
  test::writeRandomFile(dir_->file("exists"), 10, 1);
  errno = 0;
  EXPECT_EQ(zcio_open(c, "exists", O_RDWR | O_CREAT | O_EXCL, 0600), nullptr);
  EXPECT_EQ(errno, EEXIST);

  // Writing through a read-only handle: the server's pwrite says EBADF.
  zcio_fd_t* ro = zcio_open(c, "exists", O_RDONLY, 0);
  ASSERT_NE(ro, nullptr) << std::strerror(errno);
  char byte = 'x';
  iovec one{&byte, 1};
  errno = 0;
  EXPECT_EQ(zcio_pwritev_direct(ro, &one, 1, 0), -1);
  EXPECT_EQ(errno, EBADF);
  errno = 0;
  EXPECT_EQ(zcio_pwritev(ro, &one, 1, 0), -1);
  EXPECT_EQ(errno, EBADF);

  // Bad arguments are refused locally with EINVAL.
  errno = 0;
  EXPECT_EQ(zcio_preadv(nullptr, &one, 1, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_preadv_direct(ro, &one, -1, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_preadv_direct(ro, &one, 1, -5), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_preadv_direct(ro, nullptr, 2, 0), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_open(c, nullptr, O_RDONLY, 0), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_get_stats(c, nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_close(nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_disconnect(nullptr), -1);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_connect(nullptr), nullptr);
  EXPECT_EQ(errno, EINVAL);
  errno = 0;
  EXPECT_EQ(zcio_connect("not a url"), nullptr);
  EXPECT_NE(errno, 0);

  // A read-only handle still reads after the failures above.
  char back = 0;
  iovec b{&back, 1};
  EXPECT_EQ(zcio_preadv_direct(ro, &b, 1, 0), 1);
  EXPECT_EQ(back, test::readLocalFile(dir_->file("exists"))[0]);
  EXPECT_EQ(zcio_close(ro), 0);
  EXPECT_EQ(zcio_disconnect(c), 0);
  stopServerCleanly();
}

TEST_F(CApi, CachingLayersSwitchOnPerClientAndOffPerFile) {
  std::mt19937_64 rng(testSeed(0xca910004));
  struct zcio_options o {};
  zcio_options_init(&o);
  EXPECT_EQ(o.io_cache_bytes, 0u) << "the io-cache is off by default";
  EXPECT_EQ(o.write_behind, 0) << "write-behind is off by default";
  EXPECT_EQ(o.timeout_ms, 60000u);
  EXPECT_EQ(o.sync_spin_us, 50u) << "blocking calls spin 50 us by default";
  o.sync_spin_us = 0;  // this client sleeps at once; its calls must still complete
  o.io_cache_bytes = 1 << 20;
  o.write_behind = 1;
  o.write_behind_delay_ms = 60000;  // only fsync/close/caps send staged data
  o.timeout_ms = 0;
  errno = 0;
  EXPECT_EQ(zcio_connect_with(server_->url().c_str(), &o), nullptr);
  EXPECT_EQ(errno, EINVAL);
  o.timeout_ms = 30000;
  zcio_client_t* c = zcio_connect_with(server_->url().c_str(), &o);
  ASSERT_NE(c, nullptr) << "zcio_connect_with: " << std::strerror(errno);

  std::string model = test::writeRandomFile(dir_->file("layers.bin"), 64 * 1024, rng());
  zcio_fd_t* fd = zcio_open(c, "layers.bin", O_RDWR, 0);
  ASSERT_NE(fd, nullptr) << std::strerror(errno);
  auto stats = [&] {
    struct zcio_stats s {};
    EXPECT_EQ(zcio_get_stats(c, &s), 0);
    return s;
  };
  std::string buf(4096, '\0');
  iovec r{buf.data(), buf.size()};
  auto readAt = [&](off_t off) {
    EXPECT_EQ(zcio_preadv(fd, &r, 1, off), 4096) << std::strerror(errno);
    EXPECT_EQ(buf, model.substr(off, 4096));
  };

  // Both layers on: the second read of a page hits; small adjacent writes
  // are collapsed and reach the file only at fsync.
  readAt(8192);
  auto s0 = stats();
  readAt(8192);
  auto s1 = stats();
  EXPECT_EQ(s1.io_cache_hits - s0.io_cache_hits, 1u);
  EXPECT_EQ(s1.requests, s0.requests) << "a cache hit went to the server";
  for (int i = 0; i < 10; ++i) {
    std::string piece = randomBytes(100, rng);
    iovec w{piece.data(), piece.size()};
    ASSERT_EQ(zcio_pwritev(fd, &w, 1, 100 * i), 100) << std::strerror(errno);
    model.replace(100 * i, 100, piece);
  }
  auto s2 = stats();
  EXPECT_EQ(s2.writes_collapsed - s1.writes_collapsed, 9u);
  EXPECT_NE(test::readLocalFile(dir_->file("layers.bin")), model) << "write-behind was not used";
  ASSERT_EQ(zcio_fsync(fd), 0) << std::strerror(errno);
  EXPECT_EQ(test::readLocalFile(dir_->file("layers.bin")), model);
  EXPECT_EQ(stats().write_behind_flushes - s2.write_behind_flushes, 1u);

  // Both off for this file: every read goes to the server, every write is
  // on the server when it returns.
  ASSERT_EQ(zcio_set_file_options(fd, 0, 0), 0) << std::strerror(errno);
  readAt(8192);
  auto s3 = stats();
  readAt(8192);
  auto s4 = stats();
  EXPECT_EQ(s4.io_cache_hits, s3.io_cache_hits) << "the io-cache was not switched off";
  EXPECT_EQ(s4.requests - s3.requests, 1u);
  std::string piece = randomBytes(100, rng);
  iovec w{piece.data(), piece.size()};
  ASSERT_EQ(zcio_pwritev(fd, &w, 1, 5000), 100) << std::strerror(errno);
  model.replace(5000, 100, piece);
  EXPECT_EQ(test::readLocalFile(dir_->file("layers.bin")), model)
      << "write-behind was not switched off";
  EXPECT_EQ(stats().writes_collapsed, s4.writes_collapsed);
  EXPECT_EQ(zcio_set_file_options(nullptr, 1, 1), -1);
  EXPECT_EQ(errno, EINVAL);
  ASSERT_EQ(zcio_close(fd), 0) << std::strerror(errno);
  ASSERT_EQ(zcio_disconnect(c), 0);

  // zcio_connect: both layers off.
  c = zcio_connect(server_->url().c_str());
  ASSERT_NE(c, nullptr);
  fd = zcio_open(c, "layers.bin", O_RDWR, 0);
  ASSERT_NE(fd, nullptr);
  piece = randomBytes(100, rng);
  w = iovec{piece.data(), piece.size()};
  ASSERT_EQ(zcio_pwritev(fd, &w, 1, 0), 100);
  model.replace(0, 100, piece);
  EXPECT_EQ(test::readLocalFile(dir_->file("layers.bin")), model);
  ASSERT_EQ(zcio_close(fd), 0);
  ASSERT_EQ(zcio_disconnect(c), 0);
  stopServerCleanly();
}

TEST_F(CApi, ConnectToAClosedPortFailsWithEconnrefused) {
  // A bound but not listening socket: its port refuses connections, and no
  // other process can take it while we hold it.
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(s, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string url = "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  errno = 0;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(zcio_connect(url.c_str()), nullptr);
  EXPECT_EQ(errno, ECONNREFUSED) << std::strerror(errno);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  ::close(s);

  // And the port of a server that has stopped.
  std::string stopped_url = server_->url();
  client_.reset();
  stopServerCleanly();
  errno = 0;
  EXPECT_EQ(zcio_connect(stopped_url.c_str()), nullptr);
  if (!rdmaUnderTest()) {
    EXPECT_EQ(errno, ECONNREFUSED) << std::strerror(errno);
  } else {
    EXPECT_NE(errno, 0);
  }
}

}  // namespace
}  // namespace zcio::itest
