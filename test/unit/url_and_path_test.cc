#include <gtest/gtest.h>

#include "fops/export_root.h"
#include "fops/url.h"

namespace zcio::fops {
namespace {

TEST(Url, ParsesHostPortAndPath) {
  auto u = parseUrl("tcp://127.0.0.1:7700/dir/file.bin");
  ASSERT_TRUE(u.ok()) << u.error().toString();
  EXPECT_EQ(u->scheme, "tcp");
  EXPECT_EQ(u->host, "127.0.0.1");
  EXPECT_EQ(u->port, 7700);
  EXPECT_EQ(u->path, "dir/file.bin");
  EXPECT_EQ(u->endpoint(), "tcp://127.0.0.1:7700");
}

TEST(Url, ParsesBracketedIpv6) {
  auto u = parseUrl("tcp://[::1]:9/f");
  ASSERT_TRUE(u.ok()) << u.error().toString();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 9);
  EXPECT_EQ(u->path, "f");
}

TEST(Url, RejectsMalformedUrls) {
  for (const char* bad : {"127.0.0.1:7700", "tcp://host", "tcp://host:", "tcp://host:99999",
                          "tcp://host:12x", "tcp://:80", "udp://h:1"}) {
    EXPECT_FALSE(parseUrl(bad).ok()) << bad;
  }
  EXPECT_EQ(parseUrl("udp://h:1").error().code, EPROTONOSUPPORT);
}

TEST(ExportPath, RejectsEscapesLexically) {
  for (const char* bad : {"", "/etc/passwd", "..", "../x", "a/../../x", "a/..", "a/../b"}) {
    auto r = checkRelativePath(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_FALSE(checkRelativePath(std::string("a\0b", 3)).ok());
  for (const char* good : {"a", "a/b", "..a", "a..", "a/.../b", "./a"}) {
    EXPECT_TRUE(checkRelativePath(good).ok()) << good;
  }
}

}  // namespace
}  // namespace zcio::fops
