// zcio URLs: tcp://host:port[/path], rdma://host:port[/path], and
// auto://host:port[/path] (RDMA when a device and route exist, else TCP).
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"

namespace zcio::fops {

struct Url {
  std::string scheme;  // "tcp", "rdma" or "auto"
  std::string host;
  uint16_t port = 0;
  std::string path;  // without the leading '/'; may be empty

  std::string endpoint() const;  // "scheme://host:port"
};

Result<Url> parseUrl(const std::string& text);

}  // namespace zcio::fops
