// VerbsClientTransport: the client end of one RDMA RC connection.
//
// Calls and replies are frames in SENDs (verbs/message.h). Bulk data never
// rides in them:
//  - a direct READ registers the caller's iov (LOCAL_WRITE|REMOTE_WRITE) and
//    sends write-chunk segments; the server RDMA-WRITEs into them and then
//    SENDs the reply. RC ordering makes the data visible before the reply
//    completes, so nothing is copied on this side.
//  - a regular READ gets segments over pool buffers registered once; the
//    payload is copied out by the layer above (the baseline).
//  - a WRITE up to the negotiated inline threshold rides in the SEND (copied,
//    counted); a larger one exposes its memory REMOTE_READ as read chunks
//    and the server RDMA-READs it.
// Registrations made for a call are released before the call completes —
// on success, error, timeout or cancel — so its rkey is unusable by then
// (invariants 1 and 3): a late RDMA WRITE hits an invalid rkey and fails on
// the server instead of landing in memory the caller has taken back.
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
#include <string>
#include <thread>
#include <vector>

#include "iobuf/buffer_pool.h"
#include "iobuf/registration_cache.h"
#include "rpc/request_table.h"
#include "rpc/transport.h"
#include "verbs/owners.h"
#include "verbs/params.h"
#include "verbs/rc_connection.h"
#include "verbs/registrar.h"

namespace zcio::verbs {

struct VerbsClientOptions {
  ConnectionParams params;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds sweep_period{20};
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
  // Pinned through the registration cache with local and remote read/write
  // access: the user chose to expose this memory for its life.
  Result<void> registerMemory(void* addr, size_t length) override;
  Result<void> deregisterMemory(void* addr, size_t length) override;

  uint64_t registrations() const { return registrar_ ? registrar_->registrations() : 0; }
  const ConnectionParams& params() const { return params_; }

  explicit VerbsClientTransport(VerbsClientOptions options);  // use connect()

 private:
  struct CallState {  // per request-table slot
    // Released (per-call registrations deregistered) before completion.
    std::vector<iobuf::RegistrationRef> registrations;
    bool uses_pinned = false;             // its segments stay valid after it ends
    iobuf::IoBufVector pool_destination;  // regular reads
    uint64_t chunk_capacity = 0;
    bool sent = false;  // counted against credits
  };

  Result<void> open(const std::string& host, uint16_t port);
  void run();
  void post(std::function<void()> task);
  void start(rpc::CallPtr call);
  Result<void> send(rpc::PendingRequest& entry);
  Result<void> addSegments(rpc::PendingRequest& entry, std::span<const iovec> iov, uint32_t access,
                           google::protobuf::RepeatedPtrField<rpc::pb::Segment>* out);
  void release(rpc::PendingRequest& entry);
  void finish(rpc::PendingRequest& entry, Result<rpc::ReplyData> result);
  void onCompletion(const ibv_wc& wc);
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
  // Without an unmap monitor: pinned memory hits, anything else is
  // registered for one call and deregistered when it ends (narrow rkeys).
  std::unique_ptr<iobuf::RegistrationCache> cache_;
  std::shared_ptr<iobuf::BufferPool> pool_;
  std::unique_ptr<RcConnection> conn_;

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
  bool closed_ = false;
  Error close_error_;
  std::chrono::steady_clock::time_point next_sweep_;
};

}  // namespace zcio::verbs
