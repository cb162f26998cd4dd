// The transport conformance suite: one list of cases (late reply, never-issued
// xid, oversize reply, mid-payload cancel, timeout) that every rpc::Transport
// must pass, run against a peer that plays a misbehaving server on that
// transport's own wire. Each transport supplies a ConformancePeer and
// instantiates the suite (tcp: test/conformance/tcp_conformance_test.cc, on
// the host; verbs: test/rdma/verbs_conformance_test.cc, on rxe). A case a
// transport cannot express skips with the reason its peer gives.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"
#include "rpc/transport.h"
#include "rpc/zcio.pb.h"
#include "test/adversarial/adversarial_util.h"

namespace zcio::test {

struct PeerCall {
  uint64_t xid = 0;
  rpc::pb::Call header;
};

// A server end that does exactly what the case asks, driven synchronously
// from the test thread, plus the client transport connected to it.
class ConformancePeer {
 public:
  virtual ~ConformancePeer() = default;

  // Listens, connects the client transport, accepts.
  virtual Result<void> connect() = 0;
  virtual rpc::Transport& transport() = 0;

  virtual Result<PeerCall> nextCall() = 0;
  // A whole reply carrying `payload` (in the frame on TCP, inline in the SEND
  // on verbs). Payloads here stay small enough for either.
  virtual Result<void> reply(uint64_t xid, const rpc::pb::Reply& header,
                             std::string_view payload) = 0;
  // Mid-payload: `first` reaches the start of the call's destination while
  // the reply (of `total` payload bytes) is still incomplete...
  virtual Result<void> startPayload(const PeerCall& call, std::string_view first,
                                    uint64_t total) = 0;
  // ...then the peer tries to deliver `rest` right after it. Whether the
  // transport refuses it (verbs: the rkey is dead) or drains it (TCP), not
  // one byte of it may land once the call has completed.
  virtual void finishPayload(const PeerCall& call, std::string_view rest) = 0;
  // Whether the first `bytes` of a startPayload() are in the destination
  // (asked of the transport's counters, not by reading the memory while the
  // transport may be writing it). Verbs: the WRITE's completion said so.
  virtual bool payloadLanded(rpc::Transport& transport, uint64_t bytes) {
    return transport.counters().payload_bytes_received.load() >= bytes;
  }
  // How long past its timeout a call may take to complete.
  virtual std::chrono::milliseconds grace() const = 0;
  // Non-empty: why this transport cannot run the mid-payload case.
  virtual std::string midPayloadSkipReason() const { return {}; }
};

struct TransportUnderTest {
  std::string name;
  // Empty string: can run here; otherwise why not (every case skips).
  std::function<std::string()> unavailable;
  std::function<std::unique_ptr<ConformancePeer>()> make;
};

inline void PrintTo(const TransportUnderTest& t, std::ostream* os) {
  *os << t.name;
}

// A call's result and the destination as it was when `done` ran.
struct Outcome {
  std::promise<Result<rpc::ReplyData>> promise;
  std::future<Result<rpc::ReplyData>> future = promise.get_future();
  std::string at_completion;
  Clock::time_point completed_at;

  std::optional<Result<rpc::ReplyData>> wait(std::chrono::milliseconds timeout);
};

class TransportConformance : public ::testing::TestWithParam<TransportUnderTest> {
 protected:
  void SetUp() override;
  void TearDown() override;
  ConformancePeer& peer() { return *peer_; }
  rpc::Transport& transport() { return peer_->transport(); }

  CanaryBuffer& buffer(size_t size) { return buffers_.emplace_back(size); }
  std::shared_ptr<Outcome> submit(const rpc::CallPtr& call, CanaryBuffer& buffer);
  // After a call failed on its own, the connection still carries one.
  void expectConnectionStillWorks(uint64_t seed);

  // Buffers outlive the transport (declared first, so the peer and its
  // transport go first): a misbehaving transport writes into live memory,
  // where the checks see it.
  std::deque<CanaryBuffer> buffers_;
  std::unique_ptr<ConformancePeer> peer_;
};

}  // namespace zcio::test
