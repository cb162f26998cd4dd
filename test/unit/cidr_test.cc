#include "base/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

namespace zcio {
namespace {

IpAddress ip(const char* text) {
  uint8_t raw[16];
  if (inet_pton(AF_INET, text, raw) == 1) return IpAddress::fromBytes({raw, 4});
  EXPECT_EQ(inet_pton(AF_INET6, text, raw), 1) << text;
  return IpAddress::fromBytes({raw, 16});
}

Cidr cidr(const char* text) {
  auto parsed = Cidr::parse(text);
  EXPECT_TRUE(parsed) << text << ": " << parsed.error().toString();
  return parsed ? *parsed : Cidr{};
}

TEST(Cidr, Ipv4PrefixesMatchOnTheirBits) {
  EXPECT_TRUE(cidr("10.213.0.0/24").contains(ip("10.213.0.77")));
  EXPECT_FALSE(cidr("10.213.0.0/24").contains(ip("10.213.1.77")));
  EXPECT_TRUE(cidr("10.0.0.0/8").contains(ip("10.255.255.255")));
  EXPECT_TRUE(cidr("192.168.4.0/22").contains(ip("192.168.7.1")));
  EXPECT_FALSE(cidr("192.168.4.0/22").contains(ip("192.168.8.1")));
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
}

TEST(Cidr, BareAddressIsOneHost) {
  EXPECT_TRUE(cidr("127.0.0.1").contains(ip("127.0.0.1")));
  EXPECT_FALSE(cidr("127.0.0.1").contains(ip("127.0.0.2")));
  EXPECT_TRUE(cidr("::1").contains(ip("::1")));
  EXPECT_FALSE(cidr("::1").contains(ip("::2")));
}

TEST(Cidr, HostBitsInTheNetworkAreIgnored) {
  EXPECT_TRUE(cidr("10.1.2.3/8").contains(ip("10.9.9.9")));
  EXPECT_EQ(cidr("10.1.2.3/8").toString(), "10.1.2.3/8");
}

TEST(Cidr, Ipv6PrefixesMatchOnTheirBits) {
  EXPECT_TRUE(cidr("fd00:1234::/32").contains(ip("fd00:1234:ffff::1")));
  EXPECT_FALSE(cidr("fd00:1234::/32").contains(ip("fd00:1235::1")));
  EXPECT_TRUE(cidr("fe80::/10").contains(ip("febf::1")));
  EXPECT_FALSE(cidr("fe80::/10").contains(ip("fec0::1")));
  EXPECT_TRUE(cidr("::/0").contains(ip("2001:db8::1")));
}

TEST(Cidr, FamiliesDoNotMixButMappedIpv4IsIpv4) {
  EXPECT_FALSE(cidr("::/0").contains(ip("10.0.0.1")));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
  // A dual-stack listener sees an IPv4 peer as ::ffff:a.b.c.d.
  EXPECT_TRUE(cidr("127.0.0.0/8").contains(ip("::ffff:127.0.0.5")));
  EXPECT_TRUE(cidr("::ffff:10.0.0.0/104").contains(ip("10.4.5.6")));
  EXPECT_FALSE(cidr("::ffff:10.0.0.0/104").contains(ip("11.4.5.6")));
}

TEST(Cidr, MalformedTextIsRefusedWithTheReason) {
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/8x",
                          "example.com", "10.0.0.0/-1", "::ffff:10.0.0.0/95"}) {
    auto parsed = Cidr::parse(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().code, EINVAL) << bad;
    EXPECT_NE(parsed.error().what.find(bad), std::string::npos) << parsed.error().what;
  }
}

TEST(AllowList, EmptyAllowsAllOtherwiseAnyRangeAdmits) {
  AllowList list;
  EXPECT_TRUE(list.allows(ip("198.51.100.1")));
  list.add(cidr("127.0.0.1/32"));
  list.add(cidr("fd00::/8"));
  EXPECT_TRUE(list.allows(ip("127.0.0.1")));
  EXPECT_TRUE(list.allows(ip("fd12::3")));
  EXPECT_FALSE(list.allows(ip("127.0.0.2")));
  EXPECT_FALSE(list.allows(ip("10.213.0.2")));
  EXPECT_FALSE(list.allows(IpAddress{}));
  EXPECT_EQ(list.describe(), "127.0.0.1/32, fd00::/8");
}

TEST(IpAddress, FromSockaddrReadsBothFamilies) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, "10.213.0.2", &in.sin_addr);
  EXPECT_TRUE(cidr("10.213.0.0/24")
                  .contains(IpAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&in))));
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "fd00::9", &in6.sin6_addr);
  EXPECT_TRUE(
      cidr("fd00::/16").contains(IpAddress::fromSockaddr(reinterpret_cast<const sockaddr*>(&in6))));
  EXPECT_EQ(IpAddress::fromSockaddr(nullptr).length, 0);
}

}  // namespace
}  // namespace zcio
