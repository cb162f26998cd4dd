// The active side of rdma_cm, up to a resolved route: what a client does
// before it creates its QP (which needs the device, known only now) and
// calls rdma_connect.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "base/result.h"
#include "verbs/cm.h"

namespace zcio::verbs {

// A new event channel and cm id, with the address (rdma_getaddrinfo: IPv4,
// IPv6 or a name) and the route to host:port resolved, each within
// `timeout`. `ack_timeout` (verbs/cm.h) is set before the route; 0 keeps
// rdma_cm's. On success id->verbs is the device the route leaves by.
Result<CmEndpoint> resolveRoute(const std::string& host, uint16_t port,
                                std::chrono::milliseconds timeout, uint8_t ack_timeout);

}  // namespace zcio::verbs
