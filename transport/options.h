// What a caller may set about a connection, for every transport, in plain
// fields: code above transport/ (fops/, the C API, tools) never includes a
// tcp/ or verbs/ header, and builds the same without RDMA.
#pragma once

#include <chrono>
#include <cstdint>

namespace zcio::transport {

// Used by rdma:// (and auto:// when RDMA is viable); TCP ignores them. The
// defaults are verbs/'s (transport/verbs_connect.cc checks they agree).
struct RdmaOptions {
  // false: register each call's memory instead of binding memory windows
  // (tests, comparisons).
  bool memory_windows = true;
  // The QP's local ACK timeout exponent, 4.096 us * 2^N; 0 keeps rdma_cm's.
  uint8_t ack_timeout = 0;
  // How long past its deadline a call may wait for its memory windows'
  // invalidation before the connection is failed.
  std::chrono::milliseconds invalidate_grace{1000};
  // Connection parameters announced to the server (the lower of both sides
  // is used): receives kept posted, receive buffer size, chunk segments per
  // call, largest payload carried inline in a SEND.
  uint16_t credits = 64;
  uint32_t max_message = 16 * 1024;
  uint32_t max_segments = 64;
  uint32_t inline_threshold = 4096;
};

struct TransportOptions {
  // Each step of connecting (TCP connect; rdma_cm address, route, connect).
  std::chrono::milliseconds connect_timeout{5000};
  // Calls pending at once on the connection; one more fails with EAGAIN
  // (TCP and RDMA alike). RDMA also puts at most min(credits, this) on the
  // wire; the rest wait in its backlog.
  uint32_t max_in_flight = 1024;
  RdmaOptions rdma;
};

}  // namespace zcio::transport
