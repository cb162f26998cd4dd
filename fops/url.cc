#include "fops/url.h"

#include "tcp/endpoint.h"

namespace zcio::fops {

std::string Url::endpoint() const {
  bool v6 = host.find(':') != std::string::npos;
  return scheme + "://" + (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Result<Url> parseUrl(const std::string& text) {
  size_t sep = text.find("://");
  if (sep == std::string::npos) {
    return makeError(EINVAL, "URL '" + text + "' has no scheme (expected tcp://host:port)");
  }
  Url url;
  url.scheme = text.substr(0, sep);
  if (url.scheme != "tcp" && url.scheme != "rdma" && url.scheme != "auto") {
    return makeError(EPROTONOSUPPORT,
                     "URL scheme '" + url.scheme + "' is not supported (tcp, rdma, auto)");
  }
  std::string rest = text.substr(sep + 3);
  size_t slash = rest.find('/', rest.rfind(']') == std::string::npos ? 0 : rest.rfind(']'));
  std::string authority = slash == std::string::npos ? rest : rest.substr(0, slash);
  if (slash != std::string::npos) url.path = rest.substr(slash + 1);
  auto hp = tcp::parseHostPort(authority);
  if (!hp) return hp.error();
  url.host = hp->host;
  url.port = hp->port;
  return url;
}

}  // namespace zcio::fops
