// Resolving "host:port" for the TCP transport.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace zcio::tcp {

struct HostPort {
  std::string host;
  uint16_t port = 0;
};

// Accepts "host:port" and "[v6]:port".
Result<HostPort> parseHostPort(const std::string& text);

}  // namespace zcio::tcp
