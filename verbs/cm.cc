#include "verbs/cm.h"

#include <infiniband/verbs.h>
#include <poll.h>

namespace zcio::verbs {

std::string describeEvent(const rdma_cm_event* event) {
  std::string out = rdma_event_str(event->event);
  if (event->status != 0) out += " (status " + std::to_string(event->status) + ")";
  return out;
}

Result<rdma_cm_event*> waitForEvent(rdma_event_channel* channel, rdma_cm_event_type expected,
                                    std::chrono::milliseconds timeout) {
  pollfd pfd{channel->fd, POLLIN, 0};
  int ready = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (ready == 0) {
    return makeError(ETIMEDOUT, std::string("timed out waiting for ") + rdma_event_str(expected));
  }
  if (ready < 0) return makeError(errno, "poll on the rdma_cm event channel");
  rdma_cm_event* event = nullptr;
  if (rdma_get_cm_event(channel, &event) != 0) return makeError(errno, "rdma_get_cm_event");
  if (event->event != expected) {
    std::string what =
        "expected " + std::string(rdma_event_str(expected)) + ", got " + describeEvent(event);
    int code = event->event == RDMA_CM_EVENT_REJECTED      ? ECONNREFUSED
               : event->event == RDMA_CM_EVENT_UNREACHABLE ? EHOSTUNREACH
               : event->event == RDMA_CM_EVENT_ADDR_ERROR  ? EADDRNOTAVAIL
                                                           : ECONNABORTED;
    rdma_ack_cm_event(event);
    return makeError(code, what);
  }
  return event;
}

rdma_conn_param makeConnParam(const ConnectionParams& params, uint8_t* storage) {
  encodeParams(params, storage);
  rdma_conn_param param{};
  param.private_data = storage;
  param.private_data_len = kParamsWireSize;
  param.responder_resources = 16;
  param.initiator_depth = 16;
  // rxe never gives up at 7 (it skips the decrement), so a QP whose
  // retransmissions go nowhere would neither progress nor error.
  param.retry_count = 6;
  // 7: retry RNR NAKs for as long as the peer takes to repost a receive.
  // Credits should make RNR impossible, but 6 (finite) failed a client QP
  // once in a two-host CI run (a flushed SEND 0.8 s after connecting, three
  // connections busy), as if the server's repost can trail a new call. A
  // peer that never reposts cannot hang a call anyway: the client's sweep
  // fails the connection at the call's deadline + invalidate_grace.
  param.rnr_retry_count = 7;
  return param;
}

Result<void> setAckTimeout(rdma_cm_id* id, uint8_t exponent) {
  if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &exponent, sizeof exponent) !=
      0)
    return makeError(errno, "rdma_set_option(ACK_TIMEOUT " + std::to_string(exponent) + ")");
  return okResult();
}

Result<void> rdmaDevicePresent() {
  int count = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) {
    return makeError(errno == 0 ? ENODEV : errno, "no RDMA devices (ibv_get_device_list failed)");
  }
  ibv_free_device_list(list);
  if (count == 0) return makeError(ENODEV, "no RDMA devices on this machine");
  return okResult();
}

}  // namespace zcio::verbs
