// rdma_cm helpers: waiting for one connection-manager event with a deadline,
// and turning rdma_cm failures into clear messages.
#pragma once

#include <rdma/rdma_cma.h>

#include <chrono>
#include <string>

#include "base/result.h"
#include "verbs/owners.h"
#include "verbs/params.h"

namespace zcio::verbs {

// Waits for the next event on `channel` and checks it is `expected`. The
// returned event must be acked (rdma_ack_cm_event) by the caller.
Result<rdma_cm_event*> waitForEvent(rdma_event_channel* channel, rdma_cm_event_type expected,
                                    std::chrono::milliseconds timeout);

// The QP's local ACK timeout, as the IB exponent (4.096 us * 2^n); 0 keeps
// what rdma_cm derives from the path (19, ~2.1 s, on rxe here). Shorter
// recovers a lost ACK sooner, but on the 2-core TCG guest 16 (~268 ms)
// let seven timeouts pass without an ACK under load and failed the QP with
// "transport retry counter exceeded" in the two-host suite, so the default
// stays rdma_cm's: with retry_count 6 a dead path fails after ~15 s.
inline constexpr uint8_t kDefaultAckTimeout = 0;
// Sets it on `id` (before rdma_resolve_route on the connecting side, before
// rdma_accept on the accepting one: each side's own QP, not negotiated).
Result<void> setAckTimeout(rdma_cm_id* id, uint8_t exponent);

// Whether any RDMA device exists here, with the reason when not.
Result<void> rdmaDevicePresent();

std::string describeEvent(const rdma_cm_event* event);

// An event channel and one cm id on it (the id dies first).
struct CmEndpoint {
  EventChannel events;
  CmId id;
};

// A fresh event channel with one RC (RDMA_PS_TCP) id on it: where both a
// connector and a listener start.
Result<CmEndpoint> newCmEndpoint();

// host:port through rdma_getaddrinfo, as rdma:// URLs name it: an IPv4
// address, an IPv6 literal (the URL's [brackets] already stripped) or a
// name. `passive`: an address to bind (listen) on. The caller frees the
// result with rdma_freeaddrinfo.
Result<rdma_addrinfo*> resolveRdmaAddress(const std::string& host, uint16_t port, bool passive);

// "10.77.0.1:4000" or "[fd77::1]:4000" (the port when `port` is set).
std::string addressText(const sockaddr* address, bool with_port = true);

// Connect/accept parameters carrying `params` as private data; `storage`
// (kParamsWireSize bytes) must live until rdma_connect/rdma_accept returns.
rdma_conn_param makeConnParam(const ConnectionParams& params, uint8_t* storage);

}  // namespace zcio::verbs
