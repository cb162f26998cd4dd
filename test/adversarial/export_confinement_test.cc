// Export confinement (invariant 4), against a real zcio-server through the
// client API: no path form reaches a file outside the export, a FIFO cannot
// hang the server, and a symlink that stays inside keeps working.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <set>

#include "fops/client.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

const std::string kSecret = "TOP-SECRET outside the export\n";
const std::string kInside = "inside the export, fine to read\n";

// base/
//   outside/secret.txt, outside/dir/
//   export/   <- exported
//     ok.txt, a/b/, a/link_up -> ../ok.txt, link_in -> ok.txt,
//     link_out_rel -> ../outside/secret.txt, link_out_abs -> /abs/outside/secret.txt,
//     link_etc -> /etc/passwd, link_dir_out -> ../outside, link_dir_abs -> /abs/outside,
//     a/deep_out -> ../../outside/secret.txt, dangling_out -> ../outside/new.txt,
//     link_proc -> /proc/self/root/etc/passwd, fifo (mkfifo)
class ExportConfinement : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    base_ = new TempDir();
    namespace fs = std::filesystem;
    std::string b = base_->path();
    fs::create_directories(b + "/outside/dir");
    fs::create_directories(b + "/export/a/b");
    writeFile(b + "/outside/secret.txt", kSecret);
    writeFile(b + "/outside/dir/secret.txt", kSecret);
    writeFile(b + "/export/ok.txt", kInside);
    std::string e = b + "/export";
    fs::create_symlink("../ok.txt", e + "/a/link_up");
    fs::create_symlink("ok.txt", e + "/link_in");
    fs::create_symlink("../outside/secret.txt", e + "/link_out_rel");
    fs::create_symlink(b + "/outside/secret.txt", e + "/link_out_abs");
    fs::create_symlink("/etc/passwd", e + "/link_etc");
    fs::create_symlink("../outside", e + "/link_dir_out");
    fs::create_directory_symlink(b + "/outside", e + "/link_dir_abs");
    fs::create_symlink("../../outside/secret.txt", e + "/a/deep_out");
    fs::create_symlink("../outside/new.txt", e + "/dangling_out");
    fs::create_symlink("/proc/self/root/etc/passwd", e + "/link_proc");
    ASSERT_EQ(::mkfifo((e + "/fifo").c_str(), 0600), 0);
    server_ = new ServerProcess(e);
  }

  static void TearDownTestSuite() {
    EXPECT_EQ(server_->stop(), 0) << server_->log();
    delete server_;
    delete base_;
  }

  void SetUp() override {
    ASSERT_TRUE(server_->alive()) << server_->log();
    fops::ClientOptions options;
    options.timeout = 5000ms;
    auto client = fops::Client::connect(server_->url(), options);
    ASSERT_TRUE(client) << client.error().toString();
    client_ = std::move(*client);
  }

  void TearDown() override {
    // Whatever happened, the server still serves the inside file.
    if (client_) {
      auto fh = client_->open("ok.txt", O_RDONLY);
      ASSERT_TRUE(fh) << fh.error().toString();
      EXPECT_EQ(readAll(*fh), kInside);
    }
    EXPECT_TRUE(server_->alive()) << server_->log();
    EXPECT_FALSE(std::filesystem::exists(base_->path() + "/outside/new.txt"))
        << "a file was created outside the export";
    EXPECT_EQ(readLocalFile(base_->path() + "/outside/secret.txt"), kSecret);
  }

  static void writeFile(const std::string& path, const std::string& text) {
    FILE* f = std::fopen(path.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fwrite(text.data(), 1, text.size(), f);
    std::fclose(f);
  }

  std::string readAll(fops::FileHandle fh) {
    std::string out(4096, '\0');
    iovec iov{out.data(), out.size()};
    auto n = client_->preadv(fh, std::span<const iovec>(&iov, 1), 0);
    if (!n) return "<error " + n.error().toString() + ">";
    out.resize(*n);
    return out;
  }

  // Open must fail with one of `codes`; if it somehow succeeds, the content
  // must at least not be the outside file's.
  void expectOpenRefused(const std::string& path, int flags, std::set<int> codes) {
    auto start = Clock::now();
    auto fh = client_->open(path, flags, 0644);
    EXPECT_LT(msSince(start), 3000ms) << "open of '" << path << "' took too long";
    if (fh) {
      std::string got = readAll(*fh);
      EXPECT_EQ(got.find("TOP-SECRET"), std::string::npos) << "served an outside file";
      ADD_FAILURE() << "open of '" << path << "' succeeded";
      return;
    }
    EXPECT_TRUE(codes.count(fh.error().code)) << "'" << path << "': " << fh.error().toString();
  }

  void expectStatRefused(const std::string& path, std::set<int> codes) {
    auto st = client_->stat(path);
    if (st) {
      ADD_FAILURE() << "stat of '" << path << "' succeeded (size " << st->size << ")";
      return;
    }
    EXPECT_TRUE(codes.count(st.error().code)) << "'" << path << "': " << st.error().toString();
  }

  static TempDir* base_;
  static ServerProcess* server_;
  std::unique_ptr<fops::Client> client_;
};

TempDir* ExportConfinement::base_ = nullptr;
ServerProcess* ExportConfinement::server_ = nullptr;

TEST_F(ExportConfinement, DotDotPathsAreRefused) {
  for (const char* p : {"..", "../outside/secret.txt", "a/../../outside/secret.txt",
                        "a/b/../../../outside/secret.txt", "./../outside/secret.txt", "a/..",
                        "a/../ok.txt", "a/b/.."}) {
    expectOpenRefused(p, O_RDONLY, {EPERM});
    expectStatRefused(p, {EPERM});
  }
}

TEST_F(ExportConfinement, AbsolutePathsAreRefused) {
  std::string secret = base_->path() + "/outside/secret.txt";
  for (const std::string& p : {std::string("/etc/passwd"), secret, std::string("//etc/passwd"),
                               std::string("/proc/self/root/etc/passwd"), std::string("/")}) {
    expectOpenRefused(p, O_RDONLY, {EPERM});
    expectStatRefused(p, {EPERM});
  }
}

TEST_F(ExportConfinement, SymlinksLeadingOutsideAreRefused) {
  for (const char* p : {"link_out_rel", "link_out_abs", "link_etc", "a/deep_out", "link_proc",
                        "link_dir_out/secret.txt", "link_dir_abs/secret.txt",
                        "link_dir_out/dir/secret.txt", "link_dir_abs/dir/../secret.txt"}) {
    expectOpenRefused(p, O_RDONLY, {EPERM});
    expectOpenRefused(p, O_RDWR, {EPERM});
    expectStatRefused(p, {EPERM});
  }
  // The directory symlinks themselves resolve outside too.
  expectStatRefused("link_dir_out", {EPERM});
  expectStatRefused("link_dir_abs", {EPERM});
}

TEST_F(ExportConfinement, CreatingThroughAnEscapeIsRefusedAndCreatesNothing) {
  for (const char* p :
       {"dangling_out", "../outside/new.txt", "link_dir_out/new.txt", "link_dir_abs/new.txt"}) {
    expectOpenRefused(p, O_WRONLY | O_CREAT, {EPERM});
    expectOpenRefused(p, O_RDWR | O_CREAT | O_TRUNC, {EPERM});
  }
  // Truncating an outside file through a symlink must not happen either.
  expectOpenRefused("link_out_rel", O_WRONLY | O_TRUNC, {EPERM});
  expectOpenRefused("link_out_abs", O_WRONLY | O_CREAT | O_TRUNC, {EPERM});
}

TEST_F(ExportConfinement, EmptyAndOddPathsAreRefused) {
  expectOpenRefused("", O_RDONLY, {EINVAL});
  expectStatRefused("", {EINVAL});
  // A NUL cannot smuggle a second path past the checks.
  expectOpenRefused(std::string("ok.txt\0/../../outside/secret.txt", 32), O_RDONLY, {EINVAL});
  expectStatRefused(std::string("ok.txt\0x", 8), {EINVAL});
  // Directories are not files.
  expectOpenRefused(".", O_RDONLY, {EINVAL, EISDIR});
  expectOpenRefused("a", O_RDONLY, {EINVAL, EISDIR});
  expectOpenRefused("a/", O_RDONLY, {EINVAL, EISDIR});
  expectOpenRefused("missing.txt", O_RDONLY, {ENOENT});
}

TEST_F(ExportConfinement, FifoInsideTheExportDoesNotHangTheServer) {
  for (int flags : {O_RDONLY, O_WRONLY, O_RDWR}) {
    expectOpenRefused("fifo", flags, {EINVAL, ENXIO});
  }
  // Stat just describes it.
  auto st = client_->stat("fifo");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_TRUE(S_ISFIFO(st->mode));
}

TEST_F(ExportConfinement, SymlinksStayingInsideWork) {
  for (const char* p : {"link_in", "a/link_up"}) {
    auto fh = client_->open(p, O_RDONLY);
    ASSERT_TRUE(fh) << p << ": " << fh.error().toString();
    EXPECT_EQ(readAll(*fh), kInside) << p;
    EXPECT_TRUE(client_->close(*fh));
    auto st = client_->stat(p);
    ASSERT_TRUE(st) << p << ": " << st.error().toString();
    EXPECT_EQ(st->size, kInside.size());
  }
}

}  // namespace
}  // namespace zcio::test
