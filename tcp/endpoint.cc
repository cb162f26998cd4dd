#include "tcp/endpoint.h"

#include <charconv>

namespace zcio::tcp {

Result<HostPort> parseHostPort(const std::string& text) {
  HostPort out;
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 == text.size()) {
    return makeError(EINVAL, "address '" + text + "' has no :port");
  }
  out.host = text.substr(0, colon);
  if (out.host.size() >= 2 && out.host.front() == '[' && out.host.back() == ']') {
    out.host = out.host.substr(1, out.host.size() - 2);
  }
  if (out.host.empty()) return makeError(EINVAL, "address '" + text + "' has no host");
  unsigned port = 0;
  const char* first = text.data() + colon + 1;
  const char* last = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (ec != std::errc() || ptr != last || port > 65535) {
    return makeError(EINVAL, "address '" + text + "' has a bad port");
  }
  out.port = static_cast<uint16_t>(port);
  return out;
}

}  // namespace zcio::tcp
