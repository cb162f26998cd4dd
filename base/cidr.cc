#include "base/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace zcio {

IpAddress IpAddress::fromBytes(std::span<const uint8_t> raw) {
  IpAddress out;
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (raw.size() == 16 && std::memcmp(raw.data(), kMappedPrefix, 12) == 0) {
    std::memcpy(out.bytes.data(), raw.data() + 12, 4);
    out.length = 4;
  } else if (raw.size() == 4 || raw.size() == 16) {
    std::memcpy(out.bytes.data(), raw.data(), raw.size());
    out.length = static_cast<uint8_t>(raw.size());
  }
  return out;
}

IpAddress IpAddress::fromSockaddr(const sockaddr* address) {
  if (address == nullptr) return {};
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    return fromBytes({reinterpret_cast<const uint8_t*>(&in->sin_addr), 4});
  }
  if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    return fromBytes({reinterpret_cast<const uint8_t*>(&in6->sin6_addr), 16});
  }
  return {};
}

std::string IpAddress::toString() const {
  char text[INET6_ADDRSTRLEN] = "?";
  if (length == 4 || length == 16) {
    inet_ntop(length == 4 ? AF_INET : AF_INET6, bytes.data(), text, sizeof text);
  }
  return text;
}

Result<Cidr> Cidr::parse(std::string_view text) {
  std::string_view host = text;
  std::string_view prefix_text;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    host = text.substr(0, slash);
    prefix_text = text.substr(slash + 1);
    if (prefix_text.empty()) return makeError(EINVAL, "'" + std::string(text) + "': empty prefix");
  }
  Cidr out;
  std::string host_string(host);
  uint8_t raw[16];
  if (inet_pton(AF_INET, host_string.c_str(), raw) == 1) {
    out.network_ = IpAddress::fromBytes({raw, 4});
  } else if (inet_pton(AF_INET6, host_string.c_str(), raw) == 1) {
    out.network_ = IpAddress::fromBytes({raw, 16});
  } else {
    return makeError(EINVAL, "'" + std::string(text) + "': not an IPv4 or IPv6 address");
  }
  // A mapped ::ffff:a.b.c.d/N range is stored as IPv4: its prefix shrinks by 96.
  bool mapped = host_string.find(':') != std::string::npos && out.network_.length == 4;
  unsigned max_prefix = out.network_.length * 8u;
  out.prefix_ = max_prefix;
  if (!prefix_text.empty()) {
    unsigned value = 0;
    auto [end, ec] =
        std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), value);
    if (ec != std::errc() || end != prefix_text.data() + prefix_text.size())
      return makeError(EINVAL, "'" + std::string(text) + "': prefix is not a number");
    if (mapped) {
      if (value < 96 || value > 128)
        return makeError(EINVAL, "'" + std::string(text) + "': prefix must be 96..128");
      value -= 96;
    }
    if (value > max_prefix) {
      return makeError(EINVAL,
                       "'" + std::string(text) + "': prefix over " + std::to_string(max_prefix));
    }
    out.prefix_ = value;
  }
  // Host bits are cleared, so "10.1.2.3/8" means 10.0.0.0/8.
  for (unsigned bit = out.prefix_; bit < max_prefix; ++bit) {
    out.network_.bytes[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
  }
  out.text_ = std::string(text);
  return out;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.length != network_.length || address.length == 0) return false;
  unsigned whole = prefix_ / 8;
  if (std::memcmp(address.bytes.data(), network_.bytes.data(), whole) != 0) return false;
  unsigned rest = prefix_ % 8;
  if (rest == 0) return true;
  auto mask = static_cast<uint8_t>(0xffu << (8 - rest));
  return (address.bytes[whole] & mask) == (network_.bytes[whole] & mask);
}

bool AllowList::allows(const IpAddress& address) const {
  if (ranges_.empty()) return true;
  for (const auto& range : ranges_) {
    if (range.contains(address)) return true;
  }
  return false;
}

std::string AllowList::describe() const {
  if (ranges_.empty()) return "any address";
  std::string out;
  for (const auto& range : ranges_) {
    if (!out.empty()) out += ", ";
    out += range.toString();
  }
  return out;
}

}  // namespace zcio
