// open/stat/fstat/fsync/close semantics against a real server and real
// files, and that errors leave the server serving.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

class FopsSemantics : public ServerFixture {};

TEST_F(FopsSemantics, OpenCreatesStatAndFstatReportTheSizeFsyncAndCloseSucceed) {
  std::mt19937_64 rng(testSeed(0x5e3a0001));
  auto fh = client_->open("sub.txt", O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_TRUE(fh) << fh.error().toString();
  ASSERT_TRUE(std::filesystem::exists(dir_->file("sub.txt"))) << "O_CREAT did not create the file";
  auto st = client_->stat("sub.txt");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, 0u);
  EXPECT_TRUE(S_ISREG(st->mode));

  std::string data = randomBytes(123457, rng);
  iovec iov{data.data(), data.size()};
  ASSERT_EQ(*client_->pwritevDirect(*fh, {&iov, 1}, 0), data.size());
  ASSERT_TRUE(client_->fsync(*fh));
  auto st2 = client_->stat("sub.txt");
  auto fst = client_->fstat(*fh);
  ASSERT_TRUE(st2) << st2.error().toString();
  ASSERT_TRUE(fst) << fst.error().toString();
  struct stat local {};
  ASSERT_EQ(::stat(dir_->file("sub.txt").c_str(), &local), 0);
  for (const auto& s : {*st2, *fst}) {
    EXPECT_EQ(s.size, data.size());
    EXPECT_EQ(s.size, static_cast<uint64_t>(local.st_size));
    EXPECT_EQ(s.ino, local.st_ino);
    EXPECT_EQ(s.mode, local.st_mode);
    EXPECT_EQ(s.mtime_ns,
              static_cast<int64_t>(local.st_mtim.tv_sec) * 1000000000 + local.st_mtim.tv_nsec);
  }
  ASSERT_TRUE(client_->close(*fh));

  // O_EXCL on an existing file, a missing file without O_CREAT, O_TRUNC.
  auto excl = client_->open("sub.txt", O_RDWR | O_CREAT | O_EXCL, 0600);
  ASSERT_FALSE(excl);
  EXPECT_EQ(excl.error().code, EEXIST);
  auto missing = client_->open("nope.txt", O_RDONLY);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  auto missing_stat = client_->stat("nope.txt");
  ASSERT_FALSE(missing_stat);
  EXPECT_EQ(missing_stat.error().code, ENOENT);
  EXPECT_FALSE(std::filesystem::exists(dir_->file("nope.txt")));
  auto trunc = client_->open("sub.txt", O_WRONLY | O_TRUNC);
  ASSERT_TRUE(trunc) << trunc.error().toString();
  auto after = client_->fstat(*trunc);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->size, 0u);
  EXPECT_EQ(std::filesystem::file_size(dir_->file("sub.txt")), 0u);
  ASSERT_TRUE(client_->close(*trunc));
  stopServerCleanly();
}

TEST_F(FopsSemantics, ClosedAndUnknownHandlesFailWithEbadfAndTheServerKeepsServing) {
  std::mt19937_64 rng(testSeed(0x5e3a0002));
  std::string content = test::writeRandomFile(dir_->file("f"), 100000, rng());

  auto unknown = client_->close(987654321);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().code, EBADF) << unknown.error().toString();

  auto fh = client_->open("f", O_RDWR);
  ASSERT_TRUE(fh) << fh.error().toString();
  ASSERT_TRUE(client_->close(*fh));
  auto twice = client_->close(*fh);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().code, EBADF);

  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    ScatterBuffer buffer(5000, 3, rng);
    auto r = mode == fops::IoMode::kDirect ? client_->preadvDirect(*fh, buffer.iov(), 0)
                                           : client_->preadv(*fh, buffer.iov(), 0);
    ASSERT_FALSE(r) << "read on a closed handle returned " << *r;
    EXPECT_EQ(r.error().code, EBADF) << r.error().toString();
    auto bad = buffer.check("");
    ASSERT_FALSE(bad) << "a failed read wrote into the buffer: " << *bad;
    auto w = mode == fops::IoMode::kDirect ? client_->pwritevDirect(*fh, buffer.iov(), 0)
                                           : client_->pwritev(*fh, buffer.iov(), 0);
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code, EBADF) << w.error().toString();
  }
  auto fst = client_->fstat(*fh);
  ASSERT_FALSE(fst);
  EXPECT_EQ(fst.error().code, EBADF);
  auto fs = client_->fsync(*fh);
  ASSERT_FALSE(fs);
  EXPECT_EQ(fs.error().code, EBADF);
  EXPECT_TRUE(test::readLocalFile(dir_->file("f")) == content)
      << "a refused write changed the file";

  // Still serving, on this connection and on a new one.
  auto again = client_->open("f", O_RDONLY);
  ASSERT_TRUE(again) << again.error().toString();
  EXPECT_NE(*again, *fh) << "a closed handle number was reused at once";
  ScatterBuffer ok(100000, 5, rng);
  auto n = client_->preadvDirect(*again, ok.iov(), 0);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_EQ(*n, content.size());
  ASSERT_FALSE(ok.check(content));
  auto fresh = connect();
  ASSERT_NE(fresh, nullptr);
  auto st = fresh->stat("f");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, content.size());
  stopServerCleanly();
}

TEST_F(FopsSemantics, AccessModeIsEnforced) {
  std::string content = test::writeRandomFile(dir_->file("f"), 4096, testSeed(0x5e3a0003));
  auto ro = client_->open("f", O_RDONLY);
  auto wo = client_->open("f", O_WRONLY);
  ASSERT_TRUE(ro && wo);
  char buf[64];
  iovec iov{buf, sizeof buf};
  auto w = client_->pwritevDirect(*ro, {&iov, 1}, 0);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, EBADF);
  auto r = client_->preadvDirect(*wo, {&iov, 1}, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EBADF);
  EXPECT_TRUE(test::readLocalFile(dir_->file("f")) == content);
  stopServerCleanly();
}

TEST_F(FopsSemantics, PathsOutsideTheExportAreRefusedAndServingContinues) {
  test::TempDir outside;
  test::writeRandomFile(outside.file("secret"), 100, 3);
  std::filesystem::create_symlink(outside.file("secret"), dir_->file("link"));
  std::filesystem::create_directory(dir_->file("d"));
  test::writeRandomFile(dir_->file("d/inside"), 10, 4);
  for (const std::string& path :
       {std::string("../secret"), outside.file("secret"), std::string("link"),
        std::string("d/../../secret"), std::string("")}) {
    SCOPED_TRACE(path);
    auto fh = client_->open(path, O_RDONLY);
    EXPECT_FALSE(fh) << "opened a path outside the export";
    auto created = client_->open(path + "x", O_RDWR | O_CREAT, 0600);
    if (path != "link" && path != "") {
      EXPECT_FALSE(created) << "created a file outside the export";
    }
    auto st = client_->stat(path);
    EXPECT_FALSE(st) << "stat'ed a path outside the export";
  }
  EXPECT_FALSE(std::filesystem::exists(outside.file("secretx")));
  auto inside = client_->stat("d/inside");
  ASSERT_TRUE(inside) << inside.error().toString();
  EXPECT_EQ(inside->size, 10u);
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest

namespace zcio::itest {
namespace {

// POSIX names are bytes: one that is not UTF-8 opens like any other, and the
// connection goes on (a proto3 string path made the server close it).
TEST_F(FopsSemantics, ANonUtf8NameWorksAndTheConnectionStaysUsable) {
  const std::string name = "latin1-\xe9t\xe9-\xff.bin";
  auto fh = client_->open(name, O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_TRUE(fh) << fh.error().toString();
  std::string data = "bytes of a file whose name is not UTF-8";
  iovec out{data.data(), data.size()};
  auto written = client_->pwritev(*fh, {&out, 1}, 0);
  ASSERT_TRUE(written) << written.error().toString();
  EXPECT_TRUE(client_->close(*fh));
  EXPECT_EQ(test::readLocalFile(dir_->file(name)), data);
  auto st = client_->stat(name);
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, data.size());
  auto missing = client_->open("missing-\xff", O_RDONLY);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_TRUE(client_->stat(name)) << "the connection broke after an error about a non-UTF-8 name";
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
