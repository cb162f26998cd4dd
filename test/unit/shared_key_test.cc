// SharedKey: the key file's checks (owner-only mode, length) and proofs that
// depend on the key, the side's label and both nonces.
#include "rpc/shared_key.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test/support/temp_dir.h"

namespace zcio::rpc {
namespace {

std::string writeFile(const test::TempDir& dir, const std::string& text, mode_t mode) {
  std::string path = dir.file("key");
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(SharedKey, LoadsAnOwnerOnlyFileAndTrimsTrailingWhitespace) {
  test::TempDir dir;
  auto key = SharedKey::load(writeFile(dir, "0123456789abcdef\n\n", 0600));
  ASSERT_TRUE(key) << key.error().toString();
  auto same = SharedKey::fromBytes("0123456789abcdef");
  EXPECT_EQ(key->proof(kClientLabel, "a", "b"), same.proof(kClientLabel, "a", "b"));
}

TEST(SharedKey, RefusesFilesOthersCanReadOrWrite) {
  test::TempDir dir;
  for (mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    auto key = SharedKey::load(writeFile(dir, "0123456789abcdef", mode));
    ASSERT_FALSE(key) << "mode " << std::oct << mode;
    EXPECT_EQ(key.error().code, EPERM);
    EXPECT_NE(key.error().what.find("chmod 600"), std::string::npos) << key.error().toString();
  }
}

TEST(SharedKey, RefusesShortKeysAndMissingFiles) {
  test::TempDir dir;
  auto shorter = SharedKey::load(writeFile(dir, "too short\n", 0600));
  ASSERT_FALSE(shorter);
  EXPECT_EQ(shorter.error().code, EINVAL);
  EXPECT_FALSE(SharedKey::load(dir.file("absent")));
}

TEST(SharedKey, AProofDependsOnKeyLabelAndBothNonces) {
  auto a = SharedKey::fromBytes("key number one, long enough");
  auto b = SharedKey::fromBytes("key number two, long enough");
  std::string base = a.proof(kServerLabel, "client", "server");
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(base, a.proof(kServerLabel, "client", "server"));
  EXPECT_NE(base, b.proof(kServerLabel, "client", "server"));
  EXPECT_NE(base, a.proof(kClientLabel, "client", "server"));
  EXPECT_NE(base, a.proof(kServerLabel, "other", "server"));
  EXPECT_NE(base, a.proof(kServerLabel, "client", "other"));
}

TEST(SharedKey, NoncesAreFreshAndComparisonIsExact) {
  auto first = randomNonce();
  auto second = randomNonce();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->size(), kNonceSize);
  EXPECT_NE(*first, *second);
  EXPECT_TRUE(equalInConstantTime("abc", "abc"));
  EXPECT_FALSE(equalInConstantTime("abc", "abd"));
  EXPECT_FALSE(equalInConstantTime("abc", "abcd"));
}

}  // namespace
}  // namespace zcio::rpc
