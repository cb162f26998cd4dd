// connectVerbs with the verbs transport built in: maps the plain options
// onto verbs::VerbsClientOptions.
#include "transport/verbs_link.h"
#include "verbs/client_transport.h"

namespace zcio::transport::detail {

// RdmaOptions and TransportOptions repeat verbs/'s defaults as plain values.
static_assert(RdmaOptions{}.ack_timeout == verbs::kDefaultAckTimeout);
static_assert(RdmaOptions{}.memory_windows == verbs::VerbsClientOptions{}.memory_windows);
static_assert(RdmaOptions{}.invalidate_grace == verbs::VerbsClientOptions{}.invalidate_grace);
static_assert(RdmaOptions{}.credits == verbs::ConnectionParams{}.credits);
static_assert(RdmaOptions{}.max_message == verbs::ConnectionParams{}.max_message);
static_assert(RdmaOptions{}.max_segments == verbs::ConnectionParams{}.max_segments);
static_assert(RdmaOptions{}.inline_threshold == verbs::ConnectionParams{}.inline_threshold);
static_assert(TransportOptions{}.connect_timeout == verbs::VerbsClientOptions{}.connect_timeout);

Result<std::unique_ptr<rpc::Transport>> connectVerbs(const std::string& host, uint16_t port,
                                                     const TransportOptions& options) {
  const RdmaOptions& rdma = options.rdma;
  verbs::VerbsClientOptions v;
  v.params.credits = rdma.credits;
  v.params.max_message = rdma.max_message;
  v.params.max_segments = rdma.max_segments;
  v.params.inline_threshold = rdma.inline_threshold;
  v.memory_windows = rdma.memory_windows;
  v.connect_timeout = options.connect_timeout;
  v.ack_timeout = rdma.ack_timeout;
  v.invalidate_grace = rdma.invalidate_grace;
  v.max_in_flight = options.max_in_flight;
  auto transport = verbs::VerbsClientTransport::connect(host, port, v);
  if (!transport) return transport.error();
  return std::unique_ptr<rpc::Transport>(std::move(*transport));
}

}  // namespace zcio::transport::detail
