// RcConnection: the verbs resources of one reliable-connected QP, shared by
// the client and server transports — completion channel and CQ, the QP
// (created on an rdma_cm id), and two registered message areas: `credits`
// receive buffers kept posted, and send buffers that frames are built in.
//
// Work-request ids are typed: the top byte says what completed (a receive,
// a send, an RDMA write or read), the rest is that kind's index.
//
// Thread-safety: none; one connection is driven by one thread.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "verbs/owners.h"
#include "verbs/params.h"

namespace zcio::verbs {

enum class WorkKind : uint8_t {
  kReceive = 1,
  kSend = 2,
  kWrite = 3,
  kRead = 4,
  kBind = 5,        // BIND_MW of a memory window (index = the window)
  kInvalidate = 6,  // LOCAL_INV of a memory window (index = the window)
};

// What a work request is for: every wr_id is the address of one of these,
// so a completion finds its request in O(1) with no search and no packed
// bits. Whoever posts a request owns its context and keeps it in place
// until the completion is polled or the QP is gone (receive and send slots:
// RcConnection; windows: MemoryWindowPool; the server's RDMA READs: the
// call they fetch WRITE data for).
struct WorkContext {
  WorkKind kind;
  uint32_t index = 0;     // receive or send slot, memory window
  void* owner = nullptr;  // what the request works for (the server's call)
};

inline uint64_t wrIdOf(const WorkContext& work) {
  return reinterpret_cast<uint64_t>(&work);
}
inline const WorkContext& workOf(const ibv_wc& wc) {
  return *reinterpret_cast<const WorkContext*>(wc.wr_id);
}

struct RemoteSegment {
  uint64_t addr;
  uint32_t rkey;
  uint32_t length;
};

class RcConnection {
 public:
  // Builds CQ, QP and message areas on `id` (whose verbs context is set),
  // in `pd`, then posts every receive. `send_slots` bounds frames in flight
  // from this side; `work_per_send` the extra RDMA work requests per frame.
  static Result<std::unique_ptr<RcConnection>> create(rdma_cm_id* id, ibv_pd* pd,
                                                      const ConnectionParams& params,
                                                      uint32_t send_slots, uint32_t work_per_send);
  ~RcConnection();

  const ConnectionParams& params() const { return params_; }
  ibv_pd* pd() const { return pd_; }
  int completionFd() const { return channel_->fd; }
  uint32_t sendQueueDepth() const { return send_queue_depth_; }

  std::byte* receiveBuffer(uint32_t slot) {
    return recv_area_ + size_t{slot} * params_.max_message;
  }
  Result<void> postReceive(uint32_t slot);

  // A free send buffer (max_message bytes), or EAGAIN when all are in use.
  Result<uint32_t> takeSendSlot();
  void returnSendSlot(uint32_t slot);
  std::byte* sendBuffer(uint32_t slot) { return send_area_ + size_t{slot} * params_.max_message; }
  // SENDs `length` bytes of the slot's buffer; always signalled (the slot is
  // reused on completion). `before` (e.g. window binds) is posted ahead of it
  // in the same ibv_post_send; `invalidate` makes it a SEND_WITH_INV of that
  // rkey (the peer's memory window).
  Result<void> postSend(uint32_t slot, size_t length, std::span<const ibv_sge> gather = {},
                        std::span<ibv_send_wr> before = {},
                        std::optional<uint32_t> invalidate = std::nullopt);
  // Signalled LOCAL_INVs, one ibv_post_send for all.
  struct Invalidation {
    uint32_t rkey;
    uint64_t wr_id;
  };
  Result<void> postLocalInvalidates(std::span<const Invalidation> invalidations);
  // An unsignalled BIND_MW of a type-2 window over [addr, addr + length) of
  // `mr`, giving it `rkey` with `access` (IBV_ACCESS_REMOTE_*), to post
  // before a SEND (see postSend's `before`).
  static ibv_send_wr makeBindRequest(ibv_mw* mw, uint32_t rkey, ibv_mr* mr, uint64_t addr,
                                     uint64_t length, int access, uint64_t wr_id);
  // RDMA WRITE / READ between registered local memory and a remote segment.
  Result<void> postWrite(std::span<const ibv_sge> local, const RemoteSegment& remote, bool signaled,
                         uint64_t wr_id);
  Result<void> postRead(std::span<const ibv_sge> local, const RemoteSegment& remote,
                        uint64_t wr_id);

  // Re-arms the CQ after consuming a channel event; call, then poll until empty.
  Result<void> consumeEvent();
  int poll(std::span<ibv_wc> out);
  // Moves the QP to ERROR: nothing more lands in memory it exposed, and
  // every posted request flushes with an error completion. Checked: a QP
  // that did not change state still serves the peer's RDMA.
  Result<void> moveToError();
  // Destroys the QP (after a failed moveToError): its rkeys' accesses end
  // with it. Posting afterwards fails with ENOTCONN.
  void destroyQueuePair();
  // The QP's retransmission attributes as the device holds them, for logs:
  // "timeout T (~S s) retry_cnt R rnr_retry N".
  std::string describeRetries() const;

 private:
  RcConnection() = default;

  ConnectionParams params_;
  ibv_pd* pd_ = nullptr;
  CompletionChannel channel_;
  CompletionQueue cq_;
  QueuePair qp_;
  std::byte* recv_area_ = nullptr;
  std::byte* send_area_ = nullptr;
  size_t area_bytes_ = 0;
  MemoryRegion recv_mr_;
  MemoryRegion send_mr_;
  std::vector<uint32_t> free_send_;
  // The wr_id of each receive and send slot (workOf); never resized.
  std::vector<WorkContext> receive_work_;
  std::vector<WorkContext> send_work_;
  uint32_t send_slots_ = 0;
  uint32_t send_queue_depth_ = 0;
};

}  // namespace zcio::verbs
