// The server as a security boundary, over the transport under test (TCP
// here; rdma:// in the Soft-RoCE guest): the HELLO handshake with a shared
// key (both ways), read-only exports, the mode policy for created files,
// dropping root with --user, and non-regular files refused before opening.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "fops/client.h"
#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

using namespace std::chrono_literals;

// A key file of 32 printable bytes, mode 0600, outside any export.
std::string writeKey(const test::TempDir& dir, const std::string& name, const std::string& text) {
  std::string path = dir.file(name);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  return path;
}

class Security : public ::testing::Test {
 protected:
  void SetUp() override {
    ::chmod(exported_.path().c_str(), 0755);
    key_ = writeKey(keys_, "export.key", "0123456789abcdef0123456789abcdef\n");
    other_key_ = writeKey(keys_, "other.key", "fedcba9876543210fedcba9876543210\n");
  }

  Result<std::unique_ptr<fops::Client>> connect(const test::ServerProcess& server,
                                                std::string key_file) {
    fops::ClientOptions options;
    options.timeout = 10000ms;
    options.key_file = std::move(key_file);
    return fops::Client::connect(server.url(), options);
  }

  static mode_t modeOnDisk(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }

  test::TempDir keys_;
  test::TempDir exported_;
  std::string key_;
  std::string other_key_;
};

TEST_F(Security, WithoutTheKeyAClientIsRefusedClearlyAndWithItEverythingWorks) {
  test::writeRandomFile(exported_.file("data.bin"), 4096, 1);
  test::ServerProcess server(exported_.path(), {"--key-file", key_});
  auto refused = connect(server, "");
  ASSERT_FALSE(refused) << "a client without the key was let in";
  EXPECT_EQ(refused.error().code, EACCES) << refused.error().toString();
  EXPECT_NE(refused.error().what.find("requires authentication"), std::string::npos)
      << refused.error().toString();

  auto client = connect(server, key_);
  ASSERT_TRUE(client) << client.error().toString();
  auto fh = (*client)->open("data.bin", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  std::string buffer(4096, '\0');
  iovec iov{buffer.data(), buffer.size()};
  auto n = (*client)->preadvDirect(*fh, {&iov, 1}, 0);
  ASSERT_TRUE(n) << n.error().toString();
  EXPECT_EQ(*n, 4096u);
  EXPECT_TRUE(buffer == test::readLocalFile(exported_.file("data.bin")));
  client->reset();
  EXPECT_NE(server.log().find("authenticated (hmac-sha256)"), std::string::npos) << server.log();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(Security, TheServerStartsOnlyWithAChosenAuthenticationAndAPrivateKey) {
  std::vector<std::string> base = {ZCIO_SERVER_BINARY, "--export", exported_.path(), "--listen",
                                   "tcp://127.0.0.1:0"};
  auto neither = runCommand(base, 20s);
  EXPECT_EQ(neither.exit_status, 2) << "started with neither --key-file nor --auth none";
  auto readable = base;
  ASSERT_EQ(::chmod(key_.c_str(), 0644), 0);
  readable.insert(readable.end(), {"--key-file", key_});
  auto loose = runCommand(readable, 20s);
  EXPECT_EQ(loose.exit_status, 1) << "started with a key file others can read";
  EXPECT_EQ(loose.out.find("listening"), std::string::npos);
}

TEST_F(Security, AClientDetectsAServerWithADifferentKey) {
  test::ServerProcess server(exported_.path(), {"--key-file", other_key_});
  auto client = connect(server, key_);
  ASSERT_FALSE(client) << "the client accepted a server that holds another key";
  EXPECT_EQ(client.error().code, EACCES);
  EXPECT_NE(client.error().what.find("server's proof does not match"), std::string::npos)
      << client.error().toString();
  // The client gave up before proving anything: the server saw no proof at all.
  EXPECT_EQ(server.log().find("authenticated"), std::string::npos) << server.log();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(Security, AClientWithAKeyRefusesAnUnauthenticatedServer) {
  test::ServerProcess server(exported_.path(), {"--auth", "none"});
  auto client = connect(server, key_);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, EACCES);
  EXPECT_NE(client.error().what.find("--auth none"), std::string::npos)
      << client.error().toString();
  EXPECT_TRUE(connect(server, "")) << "a keyless client of an --auth none server";
}

TEST_F(Security, AReadOnlyExportRefusesEveryMutationWithEROFS) {
  std::string data = test::writeRandomFile(exported_.file("data.bin"), 8192, 2);
  test::ServerProcess server(exported_.path(), {"--read-only"});
  auto client = connect(server, "");
  ASSERT_TRUE(client) << client.error().toString();
  for (int flags : {O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC, O_WRONLY | O_CREAT, O_RDWR | O_CREAT}) {
    auto fh = (*client)->open("data.bin", flags, 0644);
    ASSERT_FALSE(fh) << "flags " << flags << " opened on a read-only export";
    EXPECT_EQ(fh.error().code, EROFS) << fh.error().toString();
  }
  auto created = (*client)->open("new.bin", O_WRONLY | O_CREAT, 0644);
  ASSERT_FALSE(created);
  EXPECT_EQ(created.error().code, EROFS);
  EXPECT_FALSE(std::filesystem::exists(exported_.file("new.bin")));
  auto fh = (*client)->open("data.bin", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  std::string buffer(8192, '\0');
  iovec iov{buffer.data(), buffer.size()};
  auto n = (*client)->preadv(*fh, {&iov, 1}, 0);
  ASSERT_TRUE(n) << n.error().toString();
  EXPECT_TRUE(buffer == data);
  EXPECT_TRUE(test::readLocalFile(exported_.file("data.bin")) == data);
}

TEST_F(Security, CreatedFilesNeverGetSetuidSetgidOrStickyBits) {
  test::ServerProcess server(exported_.path());
  auto client = connect(server, "");
  ASSERT_TRUE(client) << client.error().toString();
  struct Case {
    const char* name;
    mode_t asked;
    mode_t expected;  // after the default umask 022
  };
  for (Case c : {Case{"suid", 04755, 0755}, Case{"sgid", 02755, 0755}, Case{"sticky", 01777, 0755},
                 Case{"all", 07777, 0755}}) {
    auto fh = (*client)->open(c.name, O_WRONLY | O_CREAT | O_EXCL, c.asked);
    ASSERT_TRUE(fh) << c.name << ": " << fh.error().toString();
    EXPECT_TRUE((*client)->close(*fh));
    EXPECT_EQ(modeOnDisk(exported_.file(c.name)), c.expected) << c.name;
  }
}

TEST_F(Security, TheServersUmaskAppliesToCreatedFiles) {
  test::ServerProcess server(exported_.path(), {"--umask", "077"});
  auto client = connect(server, "");
  ASSERT_TRUE(client) << client.error().toString();
  auto fh = (*client)->open("private.bin", O_WRONLY | O_CREAT, 04777);
  ASSERT_TRUE(fh) << fh.error().toString();
  EXPECT_TRUE((*client)->close(*fh));
  EXPECT_EQ(modeOnDisk(exported_.file("private.bin")), 0700u);
}

// The node is refused from an O_PATH look, before any open that would reach
// a driver or a FIFO: inotify sees no IN_OPEN on it.
TEST_F(Security, ANonRegularFileIsRefusedWithoutBeingOpened) {
  std::string fifo = exported_.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  int watch = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(watch, 0);
  ASSERT_GE(::inotify_add_watch(watch, fifo.c_str(), IN_OPEN), 0);
  test::ServerProcess server(exported_.path());
  auto client = connect(server, "");
  ASSERT_TRUE(client) << client.error().toString();
  for (int flags : {O_RDONLY, O_RDWR | O_TRUNC, O_WRONLY | O_CREAT}) {
    auto fh = (*client)->open("fifo", flags, 0644);
    ASSERT_FALSE(fh) << "a FIFO opened with flags " << flags;
    EXPECT_EQ(fh.error().code, EINVAL) << fh.error().toString();
  }
  char events[4096];
  ssize_t n = ::read(watch, events, sizeof events);
  EXPECT_LT(n, 0) << "the server opened the FIFO before refusing it (" << n << " bytes of events)";
  ::close(watch);
}

// A root server started with --user serves with that user's rights only:
// the kernel's permission checks bound every client.
TEST_F(Security, WithUserTheServerHasOnlyThatUsersRights) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to start a server that drops to nobody";
  passwd* nobody = ::getpwnam("nobody");
  if (nobody == nullptr) GTEST_SKIP() << "no user 'nobody' on this machine";
  std::string secret = test::writeRandomFile(exported_.file("root-only.bin"), 100, 3);
  ASSERT_EQ(::chmod(exported_.file("root-only.bin").c_str(), 0600), 0);
  std::string shared = test::writeRandomFile(exported_.file("root-owned.bin"), 100, 4);
  ASSERT_EQ(::chmod(exported_.file("root-owned.bin").c_str(), 0644), 0);
  std::string drop = exported_.file("drop");
  ASSERT_EQ(::mkdir(drop.c_str(), 0755), 0);
  ASSERT_EQ(::chown(drop.c_str(), nobody->pw_uid, nobody->pw_gid), 0);

  test::ServerProcess server(exported_.path(), {"--user", "nobody"});
  auto client = connect(server, "");
  ASSERT_TRUE(client) << client.error().toString() << "\nserver log:\n" << server.log();
  auto read_secret = (*client)->open("root-only.bin", O_RDONLY);
  ASSERT_FALSE(read_secret) << "nobody's server read a root-only file";
  EXPECT_EQ(read_secret.error().code, EACCES);
  auto overwrite = (*client)->open("root-owned.bin", O_WRONLY | O_TRUNC);
  ASSERT_FALSE(overwrite) << "nobody's server opened a root file for writing";
  EXPECT_EQ(overwrite.error().code, EACCES);
  auto plant = (*client)->open("planted", O_WRONLY | O_CREAT, 04755);
  ASSERT_FALSE(plant) << "nobody's server created a file in root's directory";
  EXPECT_EQ(plant.error().code, EACCES);

  auto readable = (*client)->open("root-owned.bin", O_RDONLY);  // world-readable: allowed
  ASSERT_TRUE(readable) << readable.error().toString();
  std::string buffer(100, '\0');
  iovec iov{buffer.data(), buffer.size()};
  auto n = (*client)->preadv(*readable, {&iov, 1}, 0);
  ASSERT_TRUE(n) << n.error().toString();
  EXPECT_TRUE(buffer == shared);

  auto mine = (*client)->open("drop/mine", O_WRONLY | O_CREAT, 04755);
  ASSERT_TRUE(mine) << mine.error().toString();
  EXPECT_TRUE((*client)->close(*mine));
  struct stat st {};
  ASSERT_EQ(::stat((drop + "/mine").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, nobody->pw_uid) << "created as the dropped user";
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_TRUE(test::readLocalFile(exported_.file("root-only.bin")) == secret);
  EXPECT_TRUE(test::readLocalFile(exported_.file("root-owned.bin")) == shared);
  EXPECT_FALSE(std::filesystem::exists(exported_.file("planted")));
  EXPECT_NE(server.log().find("serving as nobody"), std::string::npos) << server.log();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace zcio::itest
