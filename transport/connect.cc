#include "transport/connect.h"

#include <cerrno>

#include "base/log.h"
#include "tcp/client_transport.h"
#include "transport/verbs_link.h"

namespace zcio::transport {

bool rdmaBuiltIn() {
  return detail::kRdmaBuiltIn;
}

Error rdmaNotBuiltError() {
  return makeError(EPROTONOSUPPORT, "zcio was built without RDMA (ZCIO_WITH_VERBS=OFF)");
}

Result<std::unique_ptr<rpc::Transport>> connectTransport(std::string_view scheme,
                                                         const std::string& host, uint16_t port,
                                                         const TransportOptions& options) {
  if (scheme != "tcp" && scheme != "rdma" && scheme != "auto") {
    return makeError(EPROTONOSUPPORT, "transport scheme '" + std::string(scheme) +
                                          "' is not supported (tcp, rdma, auto)");
  }
  if (options.max_in_flight == 0) return makeError(EINVAL, "max_in_flight must be at least 1");
  if (scheme == "rdma" || scheme == "auto") {
    auto verbs = detail::connectVerbs(host, port, options);
    if (verbs) return verbs;
    if (scheme == "rdma") return verbs.error();
    ZCIO_LOG(kInfo, "auto: RDMA to ", host, ":", port, " not viable (", verbs.error().toString(),
             "); using TCP");
  }
  tcp::ClientOptions tcp_options;
  tcp_options.table_capacity = options.max_in_flight;
  tcp_options.connect_timeout = options.connect_timeout;
  auto tcp = tcp::TcpClientTransport::connect(host, port, tcp_options);
  if (!tcp) return tcp.error();
  return std::unique_ptr<rpc::Transport>(std::move(*tcp));
}

}  // namespace zcio::transport
