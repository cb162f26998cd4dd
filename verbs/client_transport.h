// VerbsClientTransport: the client end of one RDMA RC connection.
//
// Calls and replies are frames in SENDs (verbs/message.h). Bulk data never
// rides in them:
//  - a direct READ exposes the caller's iov as write-chunk segments; the
//    server RDMA-WRITEs into them and then SENDs the reply. RC ordering makes
//    the data visible before the reply completes, so nothing is copied here.
//  - a regular READ gets segments over pool buffers registered once; the
//    payload is copied out by the layer above (the baseline).
//  - a WRITE up to the negotiated inline threshold rides in the SEND (copied,
//    counted); a larger one exposes its memory as read chunks and the server
//    RDMA-READs it.
//
// How user memory is exposed (describe() says which path is in use):
//  - Memory windows (the device has type-2B windows and the server announced
//    remote invalidation): the iov is registered through the registration
//    cache with its unmap monitor on (cached across calls, page-granular,
//    LOCAL_WRITE | MW_BIND, no remote access on the MR itself). Per call and
//    per segment a type-2 window is bound (BIND_MW posted before the call's
//    SEND, fresh rkey) to exactly that segment with REMOTE_WRITE (read) or
//    REMOTE_READ (write); only window rkeys go on the wire. The server
//    answers with SEND_WITH_INV of the first chunk's rkey; the client
//    LOCAL_INVs the call's other windows and completes the call only when
//    those completions are in. On timeout or cancel it LOCAL_INVs every
//    window of the call and completes only afterwards. Pre-registered memory
//    (registerMemory) goes through windows too, so a failed call never needs
//    to close the connection.
//  - Fallback (no type-2 windows, or a peer without remote invalidation):
//    each segment is registered for this call (LOCAL_WRITE|REMOTE_WRITE or
//    REMOTE_READ) and deregistered before the call completes. Pre-registered
//    memory then exposes its own rkey, so a failed call that used it closes
//    the connection (QP to error) before completing.
// Either way no rkey of a call is usable once the call has completed — on
// success, error, timeout or cancel (invariants 1 and 3): a late RDMA WRITE
// hits an invalid rkey and fails (on rxe that error also moves this side's
// QP to error, so the connection dies, but no byte lands).
//
// Flow control: the server keeps `credits` receives posted, so at most
// `credits` calls are outstanding; more wait in a backlog.
//
// Threading: one thread per connection polls the completion channel, the
// rdma_cm channel and a wake-up eventfd; all state lives on it.
#pragma once

#include <atomic>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "iobuf/buffer_pool.h"
#include "iobuf/registration_cache.h"
#include "rpc/request_table.h"
#include "rpc/transport.h"
#include "verbs/cm.h"
#include "verbs/memory_windows.h"
#include "verbs/owners.h"
#include "verbs/params.h"
#include "verbs/rc_connection.h"
#include "verbs/registrar.h"

namespace zcio::verbs {

struct VerbsClientOptions {
  ConnectionParams params;
  // false: always the per-call registration path (tests, comparisons).
  bool memory_windows = true;
  std::chrono::milliseconds connect_timeout{5000};
  // The QP's local ACK timeout exponent (verbs/cm.h); 0 keeps rdma_cm's.
  uint8_t ack_timeout = kDefaultAckTimeout;
  std::chrono::milliseconds sweep_period{20};
  // How long past its deadline a call may wait for its memory windows'
  // LOCAL_INV completions before the connection's QP is moved to ERROR
  // (so every call completes within its timeout plus this, plus a sweep).
  std::chrono::milliseconds invalidate_grace{1000};
};

class VerbsClientTransport final : public rpc::Transport {
 public:
  static Result<std::unique_ptr<VerbsClientTransport>> connect(const std::string& host,
                                                               uint16_t port,
                                                               VerbsClientOptions options = {});
  ~VerbsClientTransport() override;

  void submit(rpc::CallPtr call) override;
  void cancel(rpc::CallPtr call) override;
  void shutdown() override;
  const rpc::TransportCounters& counters() const override { return counters_; }
  std::string describe() const override { return description_; }
  std::shared_ptr<iobuf::BufferPool> payloadPool() const override { return pool_; }
  // Pinned through the registration cache: with memory windows, LOCAL_WRITE
  // | MW_BIND (exposed per call through windows); in the fallback, with
  // remote read/write access (exposed for its life).
  Result<void> registerMemory(void* addr, size_t length) override;
  Result<void> deregisterMemory(void* addr, size_t length) override;

  uint64_t registrations() const { return registrar_ ? registrar_->registrations() : 0; }
  const ConnectionParams& params() const { return params_; }
  bool usesMemoryWindows() const { return use_windows_; }
  // Only while no call is in flight (tests).
  const iobuf::RegistrationCache& registrationCache() const { return *cache_; }

  explicit VerbsClientTransport(VerbsClientOptions options);  // use connect()

 private:
  struct Exposure {  // one segment of user memory shown to the peer
    iobuf::RegistrationRef registration;
    int64_t window = -1;  // index in windows_; -1: the registration's own rkey
  };
  struct CallState {  // per request-table slot
    // Released before completion, after their windows are invalid.
    std::vector<Exposure> exposures;
    bool uses_pinned = false;             // fallback: exposed a pinned MR's own rkey
    iobuf::IoBufVector pool_destination;  // regular reads
    uint64_t chunk_capacity = 0;
    bool sent = false;                   // counted against credits
    uint32_t invalidations_pending = 0;  // LOCAL_INVs posted, not yet completed
    // The call's result, held until those LOCAL_INVs complete.
    std::optional<Result<rpc::ReplyData>> held;
  };

  Result<void> open(const std::string& host, uint16_t port);
  void run();
  void post(std::function<void()> task);
  void start(rpc::CallPtr call);
  Result<void> send(rpc::PendingRequest& entry);
  // Exposes `iov` to the peer (remote write for a read's destination, remote
  // read for a write's payload); window binds to post go to `binds`.
  Result<void> addSegments(rpc::PendingRequest& entry, std::span<const iovec> iov,
                           bool remote_write,
                           google::protobuf::RepeatedPtrField<rpc::pb::Segment>* out,
                           std::vector<ibv_send_wr>& binds);
  void release(rpc::PendingRequest& entry);
  // Completes the call once none of its rkeys can be used any more: posts
  // LOCAL_INV for its live windows first and holds the result until they
  // complete (onWindowInvalidated).
  void finish(rpc::PendingRequest& entry, Result<rpc::ReplyData> result);
  void complete(rpc::PendingRequest& entry, Result<rpc::ReplyData> result);
  void onCompletion(const ibv_wc& wc);
  void onRemoteInvalidation(uint32_t rkey);
  void onWindowInvalidated(uint32_t window);
  void onReply(uint32_t slot, uint32_t length);
  void failConnection(Error error);
  void pump();
  void sweep();
  CallState& stateOf(uint64_t xid) { return states_[xid & (rpc::RequestTable::kMaxCapacity - 1)]; }

  VerbsClientOptions options_;
  ConnectionParams params_;
  std::string description_;
  rpc::TransportCounters counters_;

  // Teardown runs bottom-up: connection, pool, registrar, PD, id, channel.
  EventChannel events_;
  CmId id_;
  ProtectionDomain pd_;
  std::unique_ptr<VerbsRegistrar> registrar_;
  // Windows: monitored (cached across calls). Fallback: no monitor, so
  // pinned memory hits and anything else is registered for one call.
  std::unique_ptr<iobuf::RegistrationCache> cache_;
  std::shared_ptr<iobuf::BufferPool> pool_;
  std::unique_ptr<RcConnection> conn_;
  // Windows die before the cache (their MRs) and with the QP unusable.
  std::unique_ptr<MemoryWindowPool> windows_;
  bool use_windows_ = false;
  uint32_t invalidate_flags_ = IBV_WC_WITH_INV;  // see remoteInvalidateFlags()

  int wake_fd_ = -1;
  std::mutex inbox_mutex_;
  std::vector<std::function<void()>> inbox_;
  bool stopping_ = false;  // under inbox_mutex_
  std::atomic<bool> quit_{false};
  std::thread thread_;

  // Connection-thread state.
  rpc::RequestTable table_;
  std::vector<CallState> states_;
  std::deque<uint64_t> backlog_;  // xids waiting for a credit
  uint32_t outstanding_ = 0;
  // Send-queue entries not in use: binds, SENDs and LOCAL_INVs all take one;
  // a call reserves what it will need before it is sent.
  uint32_t sq_free_ = 0;
  std::vector<uint32_t> slot_work_;  // per send slot: entries its SEND retires
  bool closed_ = false;
  Error close_error_;
  std::chrono::steady_clock::time_point next_sweep_;
};

}  // namespace zcio::verbs
