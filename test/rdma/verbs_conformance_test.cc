// The conformance suite on verbs: a real VerbsClientTransport on rxe against
// a HostileServer that plays the server: replies ride inline in its SENDs,
// payloads it RDMA-WRITEs into the call's write chunk. Skipped, with the
// reason, without ZCIO_TEST_TRANSPORT=rdma and a device (soft-roce-ci/run).
#include <cstring>
#include <future>

#include "test/conformance/transport_conformance.h"
#include "test/rdma/hostile_server.h"
#include "test/support/server_process.h"
#include "verbs/client_transport.h"

namespace zcio::test {
namespace {

class VerbsPeer final : public ConformancePeer {
 public:
  ~VerbsPeer() override {
    if (transport_) transport_->shutdown();
  }

  Result<void> connect() override {
    ZCIO_RETURN_IF_ERROR(server_.listen());
    // connect() waits for ESTABLISHED, which needs our accept: in parallel.
    auto connecting = std::async(std::launch::async, [port = server_.port()] {
      return verbs::VerbsClientTransport::connect(rdmaAddress(), port);
    });
    auto accepted = server_.acceptOne();
    auto transport = connecting.get();
    if (!accepted) return accepted.error();
    if (!transport) return transport.error();
    transport_ = std::move(*transport);
    return okResult();
  }

  rpc::Transport& transport() override { return *transport_; }

  Result<PeerCall> nextCall() override {
    auto call = server_.nextCall();
    if (!call) return call.error();
    return PeerCall{call->xid, call->header};
  }

  Result<void> reply(uint64_t xid, const rpc::pb::Reply& header,
                     std::string_view payload) override {
    return server_.reply(xid, header, std::nullopt, payload);
  }

  // The first part by RDMA WRITE into the write chunk; no reply SEND yet.
  Result<void> startPayload(const PeerCall& call, std::string_view first, uint64_t) override {
    if (call.header.write_chunks_size() != 1)
      return makeError(EPROTO, "expected one write chunk, got " +
                                   std::to_string(call.header.write_chunks_size()));
    auto status = write(segmentOf(call.header.write_chunks(0)), 0, first);
    if (!status) return status.error();
    if (*status != IBV_WC_SUCCESS)
      return makeError(EIO,
                       std::string("RDMA WRITE during the call: ") + ibv_wc_status_str(*status));
    return okResult();
  }

  bool payloadLanded(rpc::Transport&, uint64_t) override { return true; }

  // The rest, at its offset; after the cancel the window is dead, so the
  // WRITE must fail (which also ends the connection on rxe).
  void finishPayload(const PeerCall& call, std::string_view rest) override {
    auto segment = segmentOf(call.header.write_chunks(0));
    auto status = write(segment, segment.length - rest.size(), rest);
    std::cout << "verbs: RDMA WRITE of the rest after the cancel: "
              << (status ? ibv_wc_status_str(*status) : status.error().toString().c_str()) << "\n";
  }

  // invalidate_grace (1 s) plus a sweep and rxe's pace in a VM.
  std::chrono::milliseconds grace() const override { return 2500ms; }

 private:
  Result<ibv_wc_status> write(verbs::RemoteSegment segment, uint64_t offset,
                              std::string_view bytes) {
    std::memcpy(server_.local().data(), bytes.data(), bytes.size());
    segment.addr += offset;
    segment.length = static_cast<uint32_t>(bytes.size());
    return server_.writeTo(segment, static_cast<uint32_t>(bytes.size()));
  }

  HostileServer server_;
  std::unique_ptr<verbs::VerbsClientTransport> transport_;
};

std::string verbsUnavailable() {
  if (transportUnderTest() != "rdma") return "needs ZCIO_TEST_TRANSPORT=rdma and an RDMA device";
  auto present = verbs::rdmaDevicePresent();
  return present ? std::string() : present.error().toString();
}

INSTANTIATE_TEST_SUITE_P(Verbs, TransportConformance,
                         ::testing::Values(TransportUnderTest{
                             "verbs", verbsUnavailable,
                             []() -> std::unique_ptr<ConformancePeer> {
                               return std::make_unique<VerbsPeer>();
                             }}),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace zcio::test
