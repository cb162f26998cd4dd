// The passive side of rdma_cm: a cm id bound to an address and listening.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.h"
#include "verbs/cm.h"

namespace zcio::verbs {

// A new event channel and cm id bound to host:port (rdma_getaddrinfo,
// passive: IPv4, IPv6 or a name; port 0 picks one) and listening with
// `backlog`. The address must have an RDMA device behind it (a wildcard has
// none: rdma_cm would then accept on any device, and a server binds its
// resources to one): on success id->verbs is that device.
Result<CmEndpoint> listenOn(const std::string& host, uint16_t port, int backlog);

// The port a listening id got (for port 0).
uint16_t listeningPort(rdma_cm_id* id);

}  // namespace zcio::verbs
