// Address ranges in CIDR notation ("10.0.0.0/8", "::1/128", "192.0.2.7")
// and an allow-list built from them, for servers that admit peers by
// address. IPv4 peers seen as IPv4-mapped IPv6 (::ffff:a.b.c.d, a dual-stack
// listener's view) match IPv4 ranges.
#pragma once

#include <sys/socket.h>

#include <array>
#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace zcio {

// An address as raw network-order bytes: 4 (IPv4) or 16 (IPv6) of them.
struct IpAddress {
  std::array<uint8_t, 16> bytes{};
  uint8_t length = 0;  // 4 or 16; 0 = none

  // IPv4-mapped IPv6 becomes IPv4; anything else is kept.
  static IpAddress fromBytes(std::span<const uint8_t> raw);
  // AF_INET / AF_INET6 socket addresses; anything else gives length 0.
  static IpAddress fromSockaddr(const sockaddr* address);
  // "10.0.0.1", "fd00::1"; "?" for none.
  std::string toString() const;
  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads a defaulted <=>.
  auto operator<=>(const IpAddress&) const = default;
};

class Cidr {
 public:
  // "ADDRESS/PREFIX" or a bare address (a single host). EINVAL with the
  // reason on a malformed address or a prefix out of range.
  static Result<Cidr> parse(std::string_view text);

  bool contains(const IpAddress& address) const;
  std::string toString() const { return text_; }

 private:
  IpAddress network_;
  unsigned prefix_ = 0;
  std::string text_;
};

// Empty: every address is allowed. Otherwise an address must fall in one of
// the ranges. Immutable after setup, so reads need no lock.
class AllowList {
 public:
  void add(Cidr range) { ranges_.push_back(std::move(range)); }
  bool empty() const { return ranges_.empty(); }
  bool allows(const IpAddress& address) const;
  // "10.0.0.0/8, ::1/128" (for logs and help).
  std::string describe() const;

 private:
  std::vector<Cidr> ranges_;
};

}  // namespace zcio
