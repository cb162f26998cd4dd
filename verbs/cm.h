// rdma_cm helpers: waiting for one connection-manager event with a deadline,
// and turning rdma_cm failures into clear messages.
#pragma once

#include <rdma/rdma_cma.h>

#include <chrono>
#include <string>

#include "base/result.h"
#include "verbs/params.h"

namespace zcio::verbs {

// Waits for the next event on `channel` and checks it is `expected`. The
// returned event must be acked (rdma_ack_cm_event) by the caller.
Result<rdma_cm_event*> waitForEvent(rdma_event_channel* channel, rdma_cm_event_type expected,
                                    std::chrono::milliseconds timeout);

// Whether any RDMA device exists here, with the reason when not.
Result<void> rdmaDevicePresent();

std::string describeEvent(const rdma_cm_event* event);

// Connect/accept parameters carrying `params` as private data; `storage`
// (kParamsWireSize bytes) must live until rdma_connect/rdma_accept returns.
rdma_conn_param makeConnParam(const ConnectionParams& params, uint8_t* storage);

}  // namespace zcio::verbs
