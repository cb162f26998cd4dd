#include "verbs/listener.h"

#include <netinet/in.h>

namespace zcio::verbs {

Result<CmEndpoint> listenOn(const std::string& host, uint16_t port, int backlog) {
  auto made = newCmEndpoint();
  if (!made) return made.error();
  CmEndpoint ep = std::move(*made);
  auto ai = resolveRdmaAddress(host, port, /*passive=*/true);
  if (!ai) return makeError(EINVAL, "listen address " + ai.error().what);
  int rc = rdma_bind_addr(ep.id.get(), (*ai)->ai_src_addr);
  int err = errno;
  rdma_freeaddrinfo(*ai);
  if (rc != 0)
    return makeError(err, "rdma_bind_addr " + host + " (is there an RDMA device on it?)");
  if (ep.id->verbs == nullptr) {
    return makeError(EADDRNOTAVAIL,
                     "listen address " + host + " has no RDMA device; name the device's address");
  }
  if (rdma_listen(ep.id.get(), backlog) != 0) return makeError(errno, "rdma_listen");
  return ep;
}

uint16_t listeningPort(rdma_cm_id* id) {
  return ntohs(rdma_get_src_port(id));
}

}  // namespace zcio::verbs
