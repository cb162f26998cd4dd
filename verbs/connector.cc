#include "verbs/connector.h"

namespace zcio::verbs {

Result<CmEndpoint> resolveRoute(const std::string& host, uint16_t port,
                                std::chrono::milliseconds timeout, uint8_t ack_timeout) {
  auto made = newCmEndpoint();
  if (!made) return made.error();
  CmEndpoint ep = std::move(*made);

  auto ai = resolveRdmaAddress(host, port, /*passive=*/false);
  if (!ai) return ai.error();
  int rc = rdma_resolve_addr(ep.id.get(), (*ai)->ai_src_addr, (*ai)->ai_dst_addr,
                             static_cast<int>(timeout.count()));
  int err = errno;
  rdma_freeaddrinfo(*ai);
  if (rc != 0) return makeError(err, "rdma_resolve_addr " + host + " (no RDMA route to it?)");
  auto ev = waitForEvent(ep.events.get(), RDMA_CM_EVENT_ADDR_RESOLVED, timeout);
  if (!ev) return makeError(ev.error().code, "resolving " + host + ": " + ev.error().what);
  rdma_ack_cm_event(*ev);
  if (ack_timeout != 0) ZCIO_RETURN_IF_ERROR(setAckTimeout(ep.id.get(), ack_timeout));
  if (rdma_resolve_route(ep.id.get(), static_cast<int>(timeout.count())) != 0)
    return makeError(errno, "rdma_resolve_route");
  ev = waitForEvent(ep.events.get(), RDMA_CM_EVENT_ROUTE_RESOLVED, timeout);
  if (!ev) return makeError(ev.error().code, "route to " + host + ": " + ev.error().what);
  rdma_ack_cm_event(*ev);
  if (ep.id->verbs == nullptr) return makeError(ENODEV, "route to " + host + " has no RDMA device");
  return ep;
}

}  // namespace zcio::verbs
