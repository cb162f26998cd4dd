#include "verbs/rc_connection.h"

#include <fcntl.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace zcio::verbs {

Result<std::unique_ptr<RcConnection>> RcConnection::create(rdma_cm_id* id, ibv_pd* pd,
                                                           const ConnectionParams& params,
                                                           uint32_t send_slots,
                                                           uint32_t work_per_send) {
  std::unique_ptr<RcConnection> c(new RcConnection());
  c->params_ = params;
  c->pd_ = pd;
  c->send_slots_ = send_slots;
  c->channel_.reset(ibv_create_comp_channel(id->verbs));
  if (!c->channel_) return makeError(errno, "ibv_create_comp_channel");
  // The channel fd is watched by the event loop; it must not block.
  int flags = fcntl(c->channel_->fd, F_GETFL);
  fcntl(c->channel_->fd, F_SETFL, flags | O_NONBLOCK);

  uint32_t send_wr = send_slots * (1 + work_per_send) + 8;
  uint32_t cqe = params.credits + send_wr + 8;
  c->cq_.reset(ibv_create_cq(id->verbs, static_cast<int>(cqe), nullptr, c->channel_.get(), 0));
  if (!c->cq_) return makeError(errno, "ibv_create_cq of " + std::to_string(cqe) + " entries");
  if (ibv_req_notify_cq(c->cq_.get(), 0) != 0) return makeError(errno, "ibv_req_notify_cq");

  ibv_qp_init_attr attr{};
  attr.send_cq = c->cq_.get();
  attr.recv_cq = c->cq_.get();
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = send_wr;
  attr.cap.max_recv_wr = params.credits;
  attr.cap.max_send_sge = 16;
  attr.cap.max_recv_sge = 1;
  attr.sq_sig_all = 0;  // selective signalling: only what we must reclaim
  if (rdma_create_qp(id, pd, &attr) != 0) return makeError(errno, "rdma_create_qp");
  c->qp_ = QueuePair(id);
  c->send_queue_depth_ = attr.cap.max_send_wr;  // what the device granted

  size_t recv_bytes = size_t{params.credits} * params.max_message;
  size_t send_bytes = size_t{send_slots} * params.max_message;
  c->area_bytes_ = recv_bytes + send_bytes;
  void* area = std::aligned_alloc(4096, (c->area_bytes_ + 4095) / 4096 * 4096);
  if (area == nullptr) return makeError(ENOMEM, "message buffers");
  c->recv_area_ = static_cast<std::byte*>(area);
  c->send_area_ = c->recv_area_ + recv_bytes;
  c->recv_mr_.reset(ibv_reg_mr(pd, c->recv_area_, recv_bytes, IBV_ACCESS_LOCAL_WRITE));
  if (!c->recv_mr_) return makeError(errno, "ibv_reg_mr of receive buffers");
  c->send_mr_.reset(ibv_reg_mr(pd, c->send_area_, send_bytes, 0));
  if (!c->send_mr_) return makeError(errno, "ibv_reg_mr of send buffers");
  for (uint32_t i = 0; i < params.credits; ++i) c->receive_work_.push_back({WorkKind::kReceive, i});
  for (uint32_t i = 0; i < send_slots; ++i) c->send_work_.push_back({WorkKind::kSend, i});
  for (uint32_t i = send_slots; i > 0; --i) c->free_send_.push_back(i - 1);
  for (uint32_t i = 0; i < params.credits; ++i) ZCIO_RETURN_IF_ERROR(c->postReceive(i));
  return c;
}

RcConnection::~RcConnection() {
  // Order: QP before the CQ and the MRs its work requests refer to.
  qp_.reset();
  recv_mr_.reset();
  send_mr_.reset();
  cq_.reset();
  channel_.reset();
  std::free(recv_area_);
}

Result<void> RcConnection::postReceive(uint32_t slot) {
  if (!qp_) return makeError(ENOTCONN, "the QP is gone");
  ibv_sge sge{reinterpret_cast<uint64_t>(receiveBuffer(slot)), params_.max_message, recv_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = wrIdOf(receive_work_[slot]);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  int rc = ibv_post_recv(qp_.get(), &wr, &bad);
  if (rc != 0) return makeError(rc, "ibv_post_recv");
  return okResult();
}

Result<uint32_t> RcConnection::takeSendSlot() {
  if (free_send_.empty()) return makeError(EAGAIN, "no free send buffer");
  uint32_t slot = free_send_.back();
  free_send_.pop_back();
  return slot;
}

void RcConnection::returnSendSlot(uint32_t slot) {
  free_send_.push_back(slot);
}

Result<void> RcConnection::postSend(uint32_t slot, size_t length, std::span<const ibv_sge> gather,
                                    std::span<ibv_send_wr> before,
                                    std::optional<uint32_t> invalidate) {
  if (!qp_) return makeError(ENOTCONN, "the QP is gone");
  ibv_sge sges[16];
  if (gather.size() + 1 > std::size(sges))
    return makeError(EINVAL, "too many gather pieces for one SEND");
  sges[0] = ibv_sge{reinterpret_cast<uint64_t>(sendBuffer(slot)), static_cast<uint32_t>(length),
                    send_mr_->lkey};
  std::copy(gather.begin(), gather.end(), sges + 1);
  ibv_send_wr wr{};
  wr.wr_id = wrIdOf(send_work_[slot]);
  wr.sg_list = sges;
  wr.num_sge = static_cast<int>(gather.size() + 1);
  wr.opcode = IBV_WR_SEND;
  if (invalidate) {
    wr.opcode = IBV_WR_SEND_WITH_INV;
    wr.invalidate_rkey = *invalidate;
  }
  wr.send_flags = IBV_SEND_SIGNALED;
  // One post (one doorbell: a system call on rxe) for the binds and the SEND.
  for (size_t i = 0; i < before.size(); ++i)
    before[i].next = i + 1 < before.size() ? &before[i + 1] : &wr;
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp_.get(), before.empty() ? &wr : before.data(), &bad);
  if (rc != 0)
    return makeError(rc,
                     before.empty() ? "ibv_post_send (SEND)" : "ibv_post_send (BIND_MW + SEND)");
  return okResult();
}

Result<void> RcConnection::postLocalInvalidates(std::span<const Invalidation> invalidations) {
  if (!qp_) return makeError(ENOTCONN, "the QP is gone");
  if (invalidations.empty()) return okResult();
  std::vector<ibv_send_wr> wrs(invalidations.size());
  for (size_t i = 0; i < wrs.size(); ++i) {
    wrs[i].wr_id = invalidations[i].wr_id;
    wrs[i].opcode = IBV_WR_LOCAL_INV;
    wrs[i].invalidate_rkey = invalidations[i].rkey;
    wrs[i].send_flags = IBV_SEND_SIGNALED;
    wrs[i].next = i + 1 < wrs.size() ? &wrs[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp_.get(), wrs.data(), &bad);
  if (rc != 0) return makeError(rc, "ibv_post_send (LOCAL_INV)");
  return okResult();
}

ibv_send_wr RcConnection::makeBindRequest(ibv_mw* mw, uint32_t rkey, ibv_mr* mr, uint64_t addr,
                                          uint64_t length, int access, uint64_t wr_id) {
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.opcode = IBV_WR_BIND_MW;
  wr.send_flags = 0;  // the SEND behind it is signalled and retires it
  wr.bind_mw.mw = mw;
  wr.bind_mw.rkey = rkey;
  wr.bind_mw.bind_info.mr = mr;
  wr.bind_mw.bind_info.addr = addr;
  wr.bind_mw.bind_info.length = length;
  wr.bind_mw.bind_info.mw_access_flags = static_cast<unsigned>(access);
  return wr;
}

Result<void> RcConnection::postWrite(std::span<const ibv_sge> local, const RemoteSegment& remote,
                                     bool signaled, uint64_t wr_id) {
  if (!qp_) return makeError(ENOTCONN, "the QP is gone");
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = const_cast<ibv_sge*>(local.data());
  wr.num_sge = static_cast<int>(local.size());
  wr.opcode = IBV_WR_RDMA_WRITE;
  wr.send_flags = signaled ? IBV_SEND_SIGNALED : 0;
  wr.wr.rdma.remote_addr = remote.addr;
  wr.wr.rdma.rkey = remote.rkey;
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp_.get(), &wr, &bad);
  if (rc != 0) return makeError(rc, "ibv_post_send (RDMA WRITE)");
  return okResult();
}

Result<void> RcConnection::postRead(std::span<const ibv_sge> local, const RemoteSegment& remote,
                                    uint64_t wr_id) {
  if (!qp_) return makeError(ENOTCONN, "the QP is gone");
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = const_cast<ibv_sge*>(local.data());
  wr.num_sge = static_cast<int>(local.size());
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = remote.addr;
  wr.wr.rdma.rkey = remote.rkey;
  ibv_send_wr* bad = nullptr;
  int rc = ibv_post_send(qp_.get(), &wr, &bad);
  if (rc != 0) return makeError(rc, "ibv_post_send (RDMA READ)");
  return okResult();
}

Result<void> RcConnection::consumeEvent() {
  ibv_cq* cq = nullptr;
  void* context = nullptr;
  if (ibv_get_cq_event(channel_.get(), &cq, &context) != 0) {
    if (errno == EAGAIN) return okResult();  // spurious wakeup
    return makeError(errno, "ibv_get_cq_event");
  }
  ibv_ack_cq_events(cq, 1);
  if (ibv_req_notify_cq(cq, 0) != 0) return makeError(errno, "ibv_req_notify_cq");
  return okResult();
}

int RcConnection::poll(std::span<ibv_wc> out) {
  return ibv_poll_cq(cq_.get(), static_cast<int>(out.size()), out.data());
}

Result<void> RcConnection::moveToError() {
  if (!qp_) return okResult();
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  int rc = ibv_modify_qp(qp_.get(), &attr, IBV_QP_STATE);
  if (rc != 0) return makeError(rc, "ibv_modify_qp to ERROR");
  return okResult();
}

void RcConnection::destroyQueuePair() {
  qp_.reset();
}

std::string RcConnection::describeRetries() const {
  if (!qp_) return "no QP";
  ibv_qp_attr attr{};
  ibv_qp_init_attr init{};
  int rc =
      ibv_query_qp(qp_.get(), &attr, IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY, &init);
  if (rc != 0) return std::string("ibv_query_qp: ") + std::strerror(rc);
  // The local ACK timeout is 4.096 us * 2^timeout; 0 means no retransmit timer.
  double seconds = attr.timeout == 0 ? 0 : 4.096e-6 * static_cast<double>(1ull << attr.timeout);
  char text[160];
  std::snprintf(text, sizeof text, "ack timeout %u (%s%.3g s) retry_cnt %u rnr_retry %u%s",
                attr.timeout, attr.timeout == 0 ? "none: " : "~", seconds, attr.retry_cnt,
                attr.rnr_retry, attr.rnr_retry == 7 ? " (infinite)" : "");
  return text;
}

}  // namespace zcio::verbs
