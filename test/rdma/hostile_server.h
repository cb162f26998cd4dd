// HostileServer: a zcio "server" on a real verbs device that speaks just
// enough of the protocol to receive calls and reply, and otherwise does with a
// call's chunk segments whatever a test asks (the hostile-peer tests and the
// verbs instance of the transport conformance suite).
#pragma once

#include <arpa/inet.h>
#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "rpc/zcio.pb.h"
#include "test/support/server_process.h"
#include "verbs/cm.h"
#include "verbs/listener.h"
#include "verbs/message.h"
#include "verbs/owners.h"
#include "verbs/params.h"
#include "verbs/rc_connection.h"

namespace zcio::test {

using namespace std::chrono_literals;

// Driven synchronously from the test thread.
class HostileServer {
 public:
  static constexpr size_t kBytes = 64 * 1024;  // our side of every RDMA READ/WRITE
  static constexpr std::chrono::seconds kWait{10};

  struct ReceivedCall {
    uint64_t xid = 0;
    rpc::pb::Call header;
  };

  // Listens with rdma_cm on rdmaAddress(), port 0, as the real server does
  // (verbs/listener.h), but with a PD of its own: it is another peer.
  Result<void> listen() {
    ZCIO_RETURN_IF_ERROR(verbs::rdmaDevicePresent());
    auto ep = verbs::listenOn(rdmaAddress(), 0, 1);
    if (!ep) return ep.error();
    events_ = std::move(ep->events);
    listener_ = std::move(ep->id);
    pd_.reset(ibv_alloc_pd(listener_->verbs));
    if (!pd_) return makeError(errno, "ibv_alloc_pd");
    // Our side of every RDMA READ/WRITE: local access only.
    local_.assign(kBytes, std::byte{0xEE});
    local_mr_.reset(ibv_reg_mr(pd_.get(), local_.data(), local_.size(), IBV_ACCESS_LOCAL_WRITE));
    if (!local_mr_) return makeError(errno, "ibv_reg_mr");
    return okResult();
  }

  uint16_t port() { return verbs::listeningPort(listener_.get()); }
  uint32_t vendorId() {
    ibv_device_attr attr{};
    return ibv_query_device(listener_->verbs, &attr) == 0 ? attr.vendor_id : 0;
  }

  // Accepts one client exactly as the real server does: its parameters from
  // the private data, negotiated, our answer in rdma_accept's.
  Result<void> acceptOne() {
    auto request = verbs::waitForEvent(events_.get(), RDMA_CM_EVENT_CONNECT_REQUEST, kWait);
    if (!request) return request.error();
    rdma_cm_id* id = (*request)->id;
    auto theirs = verbs::decodeParams((*request)->param.conn.private_data,
                                      (*request)->param.conn.private_data_len);
    rdma_ack_cm_event(*request);
    id_.reset(id);
    if (!theirs) return theirs.error();
    verbs::ConnectionParams ours;
    ours.features = features_;
    params_ = verbs::negotiate(ours, *theirs);
    verbs::ConnectionParams posted = params_;
    if (posted_receives_ > 0) posted.credits = posted_receives_;  // a lie about credits
    auto conn = verbs::RcConnection::create(id, pd_.get(), posted, 4, 4);
    if (!conn) return conn.error();
    conn_ = std::move(*conn);
    uint8_t private_data[verbs::kParamsWireSize];
    rdma_conn_param param = verbs::makeConnParam(params_, private_data);
    // The REP carries the RNR retry count the client's QP will use.
    if (rnr_retry_) param.rnr_retry_count = *rnr_retry_;
    // ~268 ms x 7 tries: our RDMA toward a QP in ERROR fails within ~2 s.
    if (auto set = verbs::setAckTimeout(id, 16); !set) return set.error();
    if (rdma_accept(id, &param) != 0) return makeError(errno, "rdma_accept");
    auto established = verbs::waitForEvent(events_.get(), RDMA_CM_EVENT_ESTABLISHED, kWait);
    if (!established) return established.error();
    rdma_ack_cm_event(*established);
    return okResult();
  }

  Result<ReceivedCall> nextCall() {
    auto wc = completion(
        [](const ibv_wc& c) { return verbs::workOf(c).kind == verbs::WorkKind::kReceive; });
    if (!wc) return wc.error();
    if (wc->status != IBV_WC_SUCCESS)
      return makeError(EIO, std::string("receive: ") + ibv_wc_status_str(wc->status));
    uint32_t slot = verbs::workOf(*wc).index;
    auto message = verbs::decodeMessage({conn_->receiveBuffer(slot), wc->byte_len});
    if (!message) return message.error();
    ReceivedCall call;
    call.xid = message->preamble.xid;
    if (!call.header.ParseFromArray(message->header.data(),
                                    static_cast<int>(message->header.size())))
      return makeError(EPROTO, "call header does not parse");
    return call;
  }

  // RDMA READ / WRITE of `length` bytes between our buffer and `remote`;
  // returns the completion's status (the point of every test).
  Result<ibv_wc_status> readFrom(const verbs::RemoteSegment& remote, uint32_t length) {
    return transfer(remote, length, /*write=*/false);
  }
  Result<ibv_wc_status> writeTo(const verbs::RemoteSegment& remote, uint32_t length) {
    return transfer(remote, length, /*write=*/true);
  }

  // What the real server sends after its RDMA WRITEs: the reply frame,
  // optionally as SEND_WITH_INV of one of the client's rkeys.
  Result<void> reply(uint64_t xid, const rpc::pb::Reply& header,
                     std::optional<uint32_t> invalidate = std::nullopt,
                     std::string_view inline_payload = {}) {
    auto slot = conn_->takeSendSlot();
    if (!slot) return slot.error();
    std::string bytes;
    header.SerializeToString(&bytes);
    auto length = verbs::encodeMessage({conn_->sendBuffer(*slot), params_.max_message},
                                       rpc::FrameType::kReply, xid, bytes,
                                       std::as_bytes(std::span(inline_payload)));
    if (!length) return length.error();
    return conn_->postSend(*slot, *length, {}, {}, invalidate);
  }

  std::vector<std::byte>& local() { return local_; }
  // What acceptOne() announces; 0 plays a server without remote invalidation.
  void announceFeatures(uint32_t features) { features_ = features; }
  // Keep only `count` receives posted while announcing the usual credits:
  // the client's later SENDs meet RNR NAKs.
  void postOnlyReceives(uint32_t count) { posted_receives_ = count; }
  // The RNR retry count acceptOne() hands the client (7: retry forever).
  void giveClientRnrRetry(uint8_t count) { rnr_retry_ = count; }

 private:
  Result<ibv_wc_status> transfer(const verbs::RemoteSegment& remote, uint32_t length, bool write) {
    if (length > local_.size()) return makeError(EINVAL, "transfer larger than our buffer");
    ibv_sge sge{reinterpret_cast<uint64_t>(local_.data()), length, local_mr_->lkey};
    uint64_t wr_id = verbs::wrIdOf(write ? write_work_ : read_work_);
    auto posted = write ? conn_->postWrite({&sge, 1}, remote, /*signaled=*/true, wr_id)
                        : conn_->postRead({&sge, 1}, remote, wr_id);
    if (!posted) return posted.error();
    auto wc = completion([&](const ibv_wc& c) { return c.wr_id == wr_id; });
    if (!wc) return wc.error();
    return wc->status;
  }

  // Polls until a completion matching `wanted` arrives; others (receives
  // flushed after an access error) are skipped.
  template <typename Pred>
  Result<ibv_wc> completion(Pred wanted) {
    auto deadline = std::chrono::steady_clock::now() + kWait;
    while (std::chrono::steady_clock::now() < deadline) {
      ibv_wc wc{};
      int got = conn_->poll({&wc, 1});
      if (got < 0) return makeError(EIO, "ibv_poll_cq");
      if (got == 0) {
        std::this_thread::sleep_for(1ms);
      } else if (wanted(wc)) {
        return wc;
      }
    }
    return makeError(ETIMEDOUT, "no completion");
  }

  // Declared parent first: destroyed QP, id, MR, PD, listener, channel.
  verbs::EventChannel events_;
  verbs::CmId listener_;
  verbs::ProtectionDomain pd_;
  std::vector<std::byte> local_;
  verbs::MemoryRegion local_mr_;
  verbs::CmId id_;
  std::unique_ptr<verbs::RcConnection> conn_;
  verbs::ConnectionParams params_;
  uint32_t features_ = verbs::ConnectionParams::kFeatureRemoteInvalidate;
  uint32_t posted_receives_ = 0;
  std::optional<uint8_t> rnr_retry_;
  verbs::WorkContext read_work_{verbs::WorkKind::kRead};
  verbs::WorkContext write_work_{verbs::WorkKind::kWrite};
};

inline verbs::RemoteSegment segmentOf(const rpc::pb::Segment& s) {
  return {s.addr(), s.rkey(), s.length()};
}

}  // namespace zcio::test
