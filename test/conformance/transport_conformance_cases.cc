// The conformance cases, the same for every transport (see
// transport_conformance.h). Every call is a direct READ into a CanaryBuffer,
// so "no byte lands" is checked on the caller's memory itself.
#include <iostream>
#include <thread>

#include "test/adversarial/adversarial_util.h"
#include "test/conformance/transport_conformance.h"
#include "test/support/scripted_peer.h"

namespace zcio::test {
namespace {

constexpr size_t kSmall = 1024;       // fits an inline verbs reply
constexpr size_t kLarge = 64 * 1024;  // the mid-payload case's destination
constexpr size_t kFirst = 16 * 1024;  // of it, what lands before the cancel

rpc::CallPtr directRead(CanaryBuffer& buffer, std::chrono::milliseconds timeout) {
  auto call = std::make_shared<rpc::Call>();
  call->header.set_op(rpc::pb::OP_READ);
  call->header.set_fh(7);
  call->header.set_length(buffer.size());
  call->direct = true;
  call->destination = {iovec{buffer.data(), buffer.size()}};
  call->reply_capacity = buffer.size();
  call->timeout = timeout;
  return call;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

// What the call's transport says it is doing (rpc/call_state.h).
std::string stateName(const rpc::Call& call) {
  return rpc::callStateName(call.state.load());
}

int errorCode(const Result<rpc::ReplyData>& r) {
  return r.ok() ? 0 : r.error().code;
}

}  // namespace

std::optional<Result<rpc::ReplyData>> Outcome::wait(std::chrono::milliseconds timeout) {
  if (future.wait_for(timeout) != std::future_status::ready) return std::nullopt;
  return future.get();
}

std::shared_ptr<Outcome> TransportConformance::submit(const rpc::CallPtr& call,
                                                      CanaryBuffer& buffer) {
  auto outcome = std::make_shared<Outcome>();
  call->done = [outcome, &buffer](Result<rpc::ReplyData> r) {
    outcome->at_completion = buffer.contents();
    outcome->completed_at = Clock::now();
    outcome->promise.set_value(std::move(r));
  };
  transport().submit(call);
  return outcome;
}

void TransportConformance::expectConnectionStillWorks(uint64_t seed) {
  CanaryBuffer& buf = buffer(kSmall);
  auto outcome = submit(directRead(buf, 10s), buf);
  auto call = peer().nextCall();
  ASSERT_TRUE(call) << call.error().toString();
  std::string bytes = patternBytes(kSmall, seed);
  ASSERT_TRUE(peer().reply(call->xid, readReplyHeader(kSmall), bytes));
  auto r = outcome->wait(10s);
  ASSERT_TRUE(r.has_value()) << "follow-up call never completed";
  ASSERT_TRUE(r->ok()) << r->error().toString();
  EXPECT_EQ((*r)->payload_length, kSmall);
  EXPECT_EQ(buf.contents(), bytes);
  EXPECT_TRUE(buf.guardsIntact());
}

void TransportConformance::SetUp() {
  std::string why = GetParam().unavailable();
  if (!why.empty()) GTEST_SKIP() << GetParam().name << ": " << why;
  peer_ = GetParam().make();
  auto connected = peer_->connect();
  ASSERT_TRUE(connected) << connected.error().toString();
}

void TransportConformance::TearDown() {
  peer_.reset();
}

// A reply for a call that already timed out: counted late, and not one byte
// of it reaches the memory the caller got back.
TEST_P(TransportConformance, LateReplyIsCountedAndLandsNowhere) {
  CanaryBuffer& buf = buffer(kSmall);
  auto call_ptr = directRead(buf, 200ms);
  auto outcome = submit(call_ptr, buf);
  auto call = peer().nextCall();
  ASSERT_TRUE(call) << call.error().toString();
  auto r = outcome->wait(200ms + peer().grace() + 5s);
  ASSERT_TRUE(r.has_value()) << "the call never timed out";
  EXPECT_EQ(errorCode(*r), ETIMEDOUT);
  EXPECT_EQ(stateName(*call_ptr), "done");
  ASSERT_TRUE(peer().reply(call->xid, readReplyHeader(kSmall), patternBytes(kSmall, 1)));
  EXPECT_TRUE(eventually([&] { return transport().counters().late_replies.load() == 1; }))
      << "late replies counted: " << transport().counters().late_replies.load();
  EXPECT_TRUE(buf.untouched()) << "a late reply wrote into a finished call's memory";
  expectConnectionStillWorks(2);
}

// An xid the client never issued is a protocol error: the connection closes
// and every pending call fails, none of them with the forged reply's bytes.
TEST_P(TransportConformance, NeverIssuedXidClosesTheConnectionAndFailsEveryCall) {
  CanaryBuffer& a_buf = buffer(kSmall);
  CanaryBuffer& b_buf = buffer(kSmall);
  auto a = submit(directRead(a_buf, 10s), a_buf);
  auto b = submit(directRead(b_buf, 10s), b_buf);
  auto a_call = peer().nextCall();
  ASSERT_TRUE(a_call) << a_call.error().toString();
  auto b_call = peer().nextCall();
  ASSERT_TRUE(b_call) << b_call.error().toString();
  // Same slot, a generation far ahead: no call of this connection had it.
  uint64_t forged = a_call->xid + (uint64_t{1000} << 16);
  ASSERT_TRUE(peer().reply(forged, readReplyHeader(kSmall), patternBytes(kSmall, 3)));
  auto ra = a->wait(5s);
  auto rb = b->wait(5s);
  ASSERT_TRUE(ra.has_value() && rb.has_value()) << "a pending call survived a protocol error";
  EXPECT_EQ(errorCode(*ra), EPROTO) << (ra->ok() ? "ok" : ra->error().toString());
  EXPECT_EQ(errorCode(*rb), EPROTO) << (rb->ok() ? "ok" : rb->error().toString());
  EXPECT_GE(transport().counters().protocol_errors.load(), 1u);
  EXPECT_TRUE(a_buf.untouched());
  EXPECT_TRUE(b_buf.untouched());
  // Closed: a new call fails at once instead of waiting for its timeout.
  CanaryBuffer& c_buf = buffer(kSmall);
  auto c = submit(directRead(c_buf, 30s), c_buf);
  auto rc = c->wait(5s);
  ASSERT_TRUE(rc.has_value()) << "a call on the closed connection did not fail";
  EXPECT_FALSE(rc->ok());
}

// A reply larger than the call's reply capacity fails that call (EMSGSIZE)
// and writes nothing, in or past the destination; the connection goes on.
TEST_P(TransportConformance, OversizeReplyFailsTheCallAndLandsNowhere) {
  CanaryBuffer& buf = buffer(kSmall);
  auto outcome = submit(directRead(buf, 10s), buf);
  auto call = peer().nextCall();
  ASSERT_TRUE(call) << call.error().toString();
  ASSERT_TRUE(peer().reply(call->xid, readReplyHeader(2 * kSmall), patternBytes(2 * kSmall, 4)));
  auto r = outcome->wait(10s);
  ASSERT_TRUE(r.has_value()) << "the oversize reply's call never completed";
  EXPECT_EQ(errorCode(*r), EMSGSIZE) << (r->ok() ? "ok" : r->error().toString());
  EXPECT_TRUE(buf.untouched()) << "an oversize reply wrote into the destination or past it";
  expectConnectionStillWorks(5);
}

// Cancel while the reply payload is half delivered: the call completes only
// once the transport has let go of the destination, and whatever the peer
// sends or writes afterwards lands nowhere.
TEST_P(TransportConformance, CancelMidPayloadCompletesAfterTheMemoryIsLetGo) {
  std::string why = peer().midPayloadSkipReason();
  if (!why.empty()) GTEST_SKIP() << GetParam().name << ": " << why;
  CanaryBuffer& buf = buffer(kLarge);
  auto call_ptr = directRead(buf, 30s);
  auto outcome = submit(call_ptr, buf);
  auto call = peer().nextCall();
  ASSERT_TRUE(call) << call.error().toString();
  std::string first = patternBytes(kFirst, 6);
  std::string rest = patternBytes(kLarge - kFirst, 7);
  ASSERT_TRUE(peer().startPayload(*call, first, kLarge));
  ASSERT_TRUE(eventually([&] { return peer().payloadLanded(transport(), kFirst); }))
      << "the first part of the payload never landed";
  // TCP pins the call while its payload lands; verbs exposes it meanwhile.
  std::string landing = stateName(*call_ptr);
  EXPECT_TRUE(landing == "receiving" || landing == "awaiting reply") << landing;
  transport().cancel(call_ptr);
  // TCP stays pinned until the next piece boundary; verbs completes once its
  // windows are invalid. Either may happen first; the checks below hold both.
  auto r = outcome->wait(1s);
  bool completed_before_rest = r.has_value();
  // Not completed: the result is decided and waits for the memory.
  if (!completed_before_rest) {
    EXPECT_EQ(stateName(*call_ptr), "releasing");
  }
  peer().finishPayload(*call, rest);
  if (!r) r = outcome->wait(10s);
  ASSERT_TRUE(r.has_value()) << "the cancelled call never completed";
  std::cout << GetParam().name << ": cancelled call completed "
            << (completed_before_rest ? "before" : "after") << " the rest of the payload came\n";
  EXPECT_EQ(errorCode(*r), ECANCELED) << (r->ok() ? "ok" : r->error().toString());
  EXPECT_EQ(stateName(*call_ptr), "done");
  EXPECT_EQ(outcome->at_completion.compare(0, kFirst, first), 0);
  std::this_thread::sleep_for(100ms);  // let anything late arrive
  EXPECT_TRUE(buf.contents() == outcome->at_completion)
      << "bytes landed in the destination after the call completed";
  EXPECT_EQ(buf.contents().find_first_not_of(kCanary, kFirst), std::string::npos)
      << "the rest of the payload landed after the cancel";
  EXPECT_TRUE(buf.guardsIntact());
  EXPECT_EQ(transport().counters().cancels.load(), 1u);
}

// A peer that never answers: the call fails with ETIMEDOUT no sooner than
// its timeout and no later than the timeout plus the transport's grace.
TEST_P(TransportConformance, TimeoutCompletesWithinTimeoutPlusGrace) {
  constexpr auto kTimeout = 300ms;
  CanaryBuffer& buf = buffer(kSmall);
  auto started = Clock::now();
  auto call_ptr = directRead(buf, kTimeout);
  auto outcome = submit(call_ptr, buf);
  auto call = peer().nextCall();
  ASSERT_TRUE(call) << call.error().toString();
  EXPECT_TRUE(eventually([&] { return stateName(*call_ptr) == "awaiting reply"; }, kTimeout))
      << stateName(*call_ptr);
  auto r = outcome->wait(kTimeout + peer().grace() + 5s);
  ASSERT_TRUE(r.has_value()) << "the call never timed out";
  EXPECT_EQ(errorCode(*r), ETIMEDOUT);
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(outcome->completed_at - started);
  std::cout << GetParam().name << ": timed out after " << took.count() << " ms (timeout "
            << kTimeout.count() << " ms, grace " << peer().grace().count() << " ms)\n";
  EXPECT_GE(took, kTimeout);
  EXPECT_LE(took, kTimeout + peer().grace());
  EXPECT_EQ(transport().counters().timeouts.load(), 1u);
  EXPECT_TRUE(buf.untouched());
}

}  // namespace zcio::test
