#include "verbs/cm.h"

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

namespace zcio::verbs {

std::string describeEvent(const rdma_cm_event* event) {
  std::string out = rdma_event_str(event->event);
  if (event->status != 0) out += " (status " + std::to_string(event->status) + ")";
  return out;
}

Result<rdma_addrinfo*> resolveRdmaAddress(const std::string& host, uint16_t port, bool passive) {
  rdma_addrinfo hints{};
  hints.ai_flags = passive ? RAI_PASSIVE : 0;
  hints.ai_port_space = RDMA_PS_TCP;
  hints.ai_qp_type = IBV_QPT_RC;
  rdma_addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  errno = 0;
  if (rdma_getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &result) !=
      0) {
    // librdmacm hands getaddrinfo's EAI_* code on in errno (negative), its
    // own failures as errno values.
    int err = errno;
    std::string why = err < 0 ? gai_strerror(err) : err > 0 ? strerror(err) : "unknown error";
    return makeError(err > 0 ? err : EHOSTUNREACH, "resolve " + host + ": " + why);
  }
  sockaddr* address = passive ? result->ai_src_addr : result->ai_dst_addr;
  if (address == nullptr || (address->sa_family != AF_INET && address->sa_family != AF_INET6)) {
    rdma_freeaddrinfo(result);
    return makeError(EAFNOSUPPORT, "resolve " + host + ": not an IPv4 or IPv6 address");
  }
  return result;
}

std::string addressText(const sockaddr* address, bool with_port) {
  char text[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  bool v6 = false;
  if (address != nullptr && address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
  } else if (address != nullptr && address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
    v6 = true;
  }
  std::string out = v6 && with_port ? "[" + std::string(text) + "]" : std::string(text);
  if (with_port) out += ":" + std::to_string(port);
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

Result<CmEndpoint> newCmEndpoint() {
  CmEndpoint ep;
  ep.events.reset(rdma_create_event_channel());
  if (!ep.events) return makeError(errno, "rdma_create_event_channel");
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(ep.events.get(), &raw, nullptr, RDMA_PS_TCP) != 0)
    return makeError(errno, "rdma_create_id");
  ep.id.reset(raw);
  return ep;
}

}  // namespace zcio::verbs
