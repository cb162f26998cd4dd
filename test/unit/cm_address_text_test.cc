// verbs::addressText: how rdma connections name their ends (IPv4 and IPv6).
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include "verbs/cm.h"

namespace zcio::verbs {
namespace {

TEST(CmAddressText, Ipv4WithAndWithoutPort) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(4000);
  ASSERT_EQ(inet_pton(AF_INET, "10.77.0.1", &in.sin_addr), 1);
  EXPECT_EQ(addressText(reinterpret_cast<sockaddr*>(&in)), "10.77.0.1:4000");
  EXPECT_EQ(addressText(reinterpret_cast<sockaddr*>(&in), false), "10.77.0.1");
}

TEST(CmAddressText, Ipv6IsBracketedWhenAPortFollows) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(4000);
  ASSERT_EQ(inet_pton(AF_INET6, "fd77::1", &in6.sin6_addr), 1);
  EXPECT_EQ(addressText(reinterpret_cast<sockaddr*>(&in6)), "[fd77::1]:4000");
  EXPECT_EQ(addressText(reinterpret_cast<sockaddr*>(&in6), false), "fd77::1");
}

TEST(CmAddressText, UnknownFamiliesAndNullSayQuestionMark) {
  sockaddr other{};
  other.sa_family = AF_UNIX;
  EXPECT_EQ(addressText(&other, false), "?");
  EXPECT_EQ(addressText(nullptr, false), "?");
}

}  // namespace
}  // namespace zcio::verbs
