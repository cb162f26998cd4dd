// Client-side adversarial tests: a real fops::Client over a real TCP
// connection to a ScriptedPeer that misbehaves on purpose. Each test names the
// protection it checks; removing that protection makes the test fail.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>

#include "fops/client.h"
#include "tcp/client_transport.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/scripted_peer.h"

namespace zcio::test {
namespace {

namespace pb = rpc::pb;
using fops::IoMode;

constexpr fops::FileHandle kFh = 7;  // the scripted peer accepts any handle

struct PeerClient {
  std::unique_ptr<fops::Client> client;
  tcp::TcpClientTransport* transport = nullptr;  // owned by client
  fops::Client* operator->() { return client.get(); }
};

PeerClient connectClient(const ScriptedPeer& peer, std::chrono::milliseconds timeout,
                         size_t receive_piece = 256 * 1024) {
  tcp::ClientOptions topts;
  topts.receive_piece = receive_piece;
  auto transport = tcp::TcpClientTransport::connect("127.0.0.1", peer.port(), topts);
  EXPECT_TRUE(transport) << transport.error().toString();
  if (!transport) return {};
  PeerClient out;
  out.transport = transport->get();
  fops::ClientOptions copts;
  copts.timeout = timeout;
  out.client = std::make_unique<fops::Client>(std::move(*transport), copts);
  return out;
}

struct PendingIo {
  std::shared_ptr<AsyncResult> result;
  fops::AsyncCall handle;
};

// An async read whose result outlives this frame (the callback owns it).
PendingIo startRead(fops::Client& client, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                    std::function<void()> at_completion = {}) {
  auto result = std::make_shared<AsyncResult>();
  auto cb = result->callback(std::move(at_completion));
  auto handle = client.preadvAsync(kFh, iov, offset, mode,
                                   [result, cb](Result<size_t> r) { cb(std::move(r)); });
  return {result, handle};
}

std::string modeName(IoMode mode) {
  return mode == IoMode::kDirect ? "Direct" : "Regular";
}

// Test parameters print as their names (ctest shows them).
struct Mode {
  IoMode mode;
};
[[maybe_unused]] void PrintTo(const Mode& m, std::ostream* os) {
  *os << modeName(m.mode);
}
const auto kBothModes = ::testing::Values(Mode{IoMode::kDirect}, Mode{IoMode::kRegular});

// Answers one READ call correctly (payload = patternBytes(length, seed)).
bool answerRead(FrameSocket& c, uint64_t seed, std::chrono::milliseconds wait = 5000ms) {
  auto call = c.readCall(wait);
  if (!call) return false;
  uint64_t length = call->call.length();
  return c.sendReply(call->xid, readReplyHeader(length), patternBytes(length, seed));
}

// After a failure, the connection must still carry a correct READ.
void expectConnectionStillWorks(PeerClient& pc, IoMode mode, uint64_t seed) {
  CanaryBuffer buf(5000);
  auto io = startRead(*pc.client, buf.iov(), 0, mode);
  auto r = io.result->wait(5000ms);
  ASSERT_TRUE(r.has_value()) << "follow-up read hung";
  ASSERT_TRUE(*r) << r->error().toString();
  EXPECT_EQ(**r, 5000u);
  EXPECT_EQ(buf.contents(), patternBytes(5000, seed));
  EXPECT_TRUE(buf.guardsIntact());
}

// ---- A1: out-of-order replies ----------------------------------------------

// The request table maps each reply's xid to its own destination: replies in
// reverse and in shuffled order, of different sizes, some crossing iovec and
// receive-piece boundaries, each land in the buffer of the call they answer.
TEST(ClientVsScriptedPeer, OutOfOrderRepliesLandInTheirOwnBuffers) {
  constexpr int kCalls = 12;
  constexpr int kRounds = 2;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    std::mt19937 rng(12345);
    for (int round = 0; round < kRounds; ++round) {
      std::vector<ReceivedCall> calls;
      for (int i = 0; i < kCalls; ++i) {
        auto call = c.readCall();
        if (!call) {
          ADD_FAILURE() << "peer: call " << i << " of round " << round << " missing";
          return;
        }
        calls.push_back(std::move(*call));
      }
      if (round == 0) {
        std::reverse(calls.begin(), calls.end());
      } else {
        std::shuffle(calls.begin(), calls.end(), rng);
      }
      for (auto& call : calls) {
        uint64_t length = call.call.length();
        // The payload is a function of the call's offset: only the call that
        // asked for this offset may receive it.
        c.sendReply(call.xid, readReplyHeader(length), patternBytes(length, call.call.offset()));
      }
    }
    c.waitClosed(10000ms);
  });
  // A small, odd receive piece makes pieces straddle iovec boundaries.
  auto pc = connectClient(peer, 10000ms, 5003);
  ASSERT_TRUE(pc.client);

  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::vector<std::string>> parts(kCalls);
    std::vector<std::vector<iovec>> iovs(kCalls);
    std::vector<PendingIo> pending;
    uint64_t regular_bytes = 0;
    for (int i = 0; i < kCalls; ++i) {
      size_t size = 1000 + static_cast<size_t>(i) * 7919 + static_cast<size_t>(i % 3) * 65536;
      // Destinations: one iovec, three uneven ones, or with an empty iovec.
      std::vector<size_t> cuts;
      if (i % 3 == 0) cuts = {size};
      if (i % 3 == 1) cuts = {size / 7, size / 2, size - size / 7 - size / 2};
      if (i % 3 == 2) cuts = {size / 3, 0, size - size / 3};
      for (size_t cut : cuts) parts[i].push_back(std::string(cut, kCanary));
      for (auto& p : parts[i]) iovs[i].push_back(iovec{p.data(), p.size()});
      IoMode mode = i % 2 == 0 ? IoMode::kDirect : IoMode::kRegular;
      if (mode == IoMode::kRegular) regular_bytes += size;
      uint64_t offset =
          static_cast<uint64_t>(round) * 100000000 + static_cast<uint64_t>(i) * 1000003;
      pending.push_back(startRead(*pc.client, iovs[i], offset, mode));
    }
    for (int i = 0; i < kCalls; ++i) {
      auto r = pending[i].result->wait(10000ms);
      ASSERT_TRUE(r.has_value()) << "read " << i << " never completed";
      ASSERT_TRUE(*r) << r->error().toString();
      std::string got;
      for (auto& p : parts[i]) got += p;
      uint64_t offset =
          static_cast<uint64_t>(round) * 100000000 + static_cast<uint64_t>(i) * 1000003;
      EXPECT_EQ(**r, got.size());
      EXPECT_TRUE(got == patternBytes(got.size(), offset))
          << "round " << round << " read " << i << " got another call's payload";
    }
    (void)regular_bytes;
  }
  auto s = pc->stats();
  EXPECT_EQ(s.protocol_errors, 0u);
  EXPECT_EQ(s.late_replies, 0u);
  EXPECT_EQ(s.bytes_discarded, 0u);
}

// A call submitted from an application thread goes on the wire from that
// thread: it does not wait for the io thread, which here is held inside
// another call's completion. (Posting every call to the io thread, as zcio
// once did, costs a synchronous call two extra thread wake-ups.)
TEST(ClientVsScriptedPeer, ACallIsSentFromTheCallersThreadWhileTheIoThreadIsBusy) {
  std::atomic<bool> second_seen{false};
  ScriptedPeer peer([&](FrameSocket& c, int) {
    if (!answerRead(c, 1)) return;
    auto second = c.readCall(5000ms);
    if (!second) return;
    second_seen = true;
    c.sendReply(second->xid, readReplyHeader(second->call.length()),
                patternBytes(second->call.length(), 2));
    c.waitClosed(10000ms);
  });
  auto pc = connectClient(peer, 10000ms);
  ASSERT_TRUE(pc.client);
  std::atomic<bool> in_completion{false};
  std::atomic<bool> release{false};
  CanaryBuffer first(4096);
  auto io1 = startRead(*pc.client, first.iov(), 0, IoMode::kDirect, [&] {
    in_completion = true;  // on the io thread, which stays here until released
    waitUntil([&] { return release.load(); }, 10000ms);
  });
  ASSERT_TRUE(waitUntil([&] { return in_completion.load(); }, 5000ms));
  CanaryBuffer second(4096);
  auto io2 = startRead(*pc.client, second.iov(), 4096, IoMode::kDirect);
  bool sent_while_busy = waitUntil([&] { return second_seen.load(); }, 2000ms);
  release = true;
  EXPECT_TRUE(sent_while_busy) << "the second call reached the peer only after the io thread "
                                  "was free: submit() hands calls to that thread";
  auto r1 = io1.result->wait(5000ms);
  auto r2 = io2.result->wait(5000ms);
  ASSERT_TRUE(r1 && *r1 && r2 && *r2);
  EXPECT_EQ(second.contents(), patternBytes(4096, 2));
  EXPECT_TRUE(second.guardsIntact());
}

// ---- A2: nothing lands after completion --------------------------------------

class LateReply : public ::testing::TestWithParam<Mode> {};

// A reply that arrives after its call timed out is drained into scratch: the
// caller's buffer (which the caller owns again) is never written, and the
// connection stays in sync for the next call.
TEST_P(LateReply, AfterTimeoutIsDrainedAndNeverReachesTheBuffer) {
  constexpr size_t kSize = 64 * 1024;
  Signal client_gave_up, late_sent;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    client_gave_up.wait(5000ms);  // reply only once the client has timed out
    c.sendReply(call->xid, readReplyHeader(kSize), patternBytes(kSize, 1));
    late_sent.notify();
    answerRead(c, 2);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 200ms);
  ASSERT_TRUE(pc.client);

  auto start = Clock::now();
  auto io = startRead(*pc.client, buf.iov(), 0, GetParam().mode);
  auto r = io.result->wait(5000ms);
  ASSERT_TRUE(r.has_value()) << "timed-out call never completed";
  ASSERT_FALSE(*r) << "call succeeded although the peer never answered in time";
  EXPECT_EQ(r->error().code, ETIMEDOUT) << r->error().toString();
  EXPECT_LT(msSince(start), 3000ms);
  client_gave_up.notify();

  ASSERT_TRUE(late_sent.wait(5000ms));
  ASSERT_TRUE(waitUntil([&] { return pc->stats().bytes_discarded >= kSize; }))
      << "late reply payload was not drained";
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(buf.untouched()) << "late reply bytes reached the caller's buffer";
  auto s = pc->stats();
  EXPECT_EQ(s.late_replies, 1u);
  EXPECT_EQ(s.bytes_discarded, kSize);
  EXPECT_EQ(s.timeouts, 1u);
  EXPECT_EQ(s.protocol_errors, 0u);
  expectConnectionStillWorks(pc, GetParam().mode, 2);
}

// Same for Client::cancel: ECANCELED at once, the late reply is drained.
TEST_P(LateReply, AfterCancelIsDrainedAndNeverReachesTheBuffer) {
  constexpr size_t kSize = 64 * 1024;
  Signal call_seen, cancelled, late_sent;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    call_seen.notify();
    cancelled.wait(5000ms);
    c.sendReply(call->xid, readReplyHeader(kSize), patternBytes(kSize, 1));
    late_sent.notify();
    answerRead(c, 3);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 30000ms);
  ASSERT_TRUE(pc.client);

  auto io = startRead(*pc.client, buf.iov(), 0, GetParam().mode);
  ASSERT_TRUE(call_seen.wait(5000ms));
  pc->cancel(io.handle);
  auto r = io.result->wait(3000ms);
  ASSERT_TRUE(r.has_value()) << "cancelled call never completed";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, ECANCELED) << r->error().toString();
  cancelled.notify();

  ASSERT_TRUE(late_sent.wait(5000ms));
  ASSERT_TRUE(waitUntil([&] { return pc->stats().bytes_discarded >= kSize; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(buf.untouched()) << "reply of a cancelled call reached the caller's buffer";
  auto s = pc->stats();
  EXPECT_EQ(s.late_replies, 1u);
  EXPECT_EQ(s.bytes_discarded, kSize);
  EXPECT_EQ(s.cancels, 1u);
  expectConnectionStillWorks(pc, GetParam().mode, 3);
}

// A second reply for an xid that already completed is a late reply: drained,
// the completed buffer keeps the first reply's bytes.
TEST_P(LateReply, DuplicateReplyDoesNotOverwriteACompletedBuffer) {
  constexpr size_t kSize = 32 * 1024;
  Signal first_done;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    c.sendReply(call->xid, readReplyHeader(kSize), patternBytes(kSize, 1));
    first_done.wait(5000ms);
    c.sendReply(call->xid, readReplyHeader(kSize), patternBytes(kSize, 99));
    answerRead(c, 4);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 10000ms);
  ASSERT_TRUE(pc.client);
  auto io = startRead(*pc.client, buf.iov(), 0, GetParam().mode);
  auto r = io.result->wait(5000ms);
  ASSERT_TRUE(r.has_value());
  ASSERT_TRUE(*r) << r->error().toString();
  first_done.notify();
  ASSERT_TRUE(waitUntil([&] { return pc->stats().bytes_discarded >= kSize; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(buf.contents() == patternBytes(kSize, 1)) << "duplicate reply overwrote the buffer";
  EXPECT_TRUE(buf.guardsIntact());
  EXPECT_EQ(pc->stats().late_replies, 1u);
  expectConnectionStillWorks(pc, GetParam().mode, 4);
}

// The next call reuses the timed-out call's request-table slot; the stale
// xid's late reply must not complete it (xid generations tell them apart):
// the new call gets only its own reply.
TEST_P(LateReply, StaleXidDoesNotCompleteTheNextCallInTheSameSlot) {
  constexpr size_t kSize = 16 * 1024;
  Signal client_gave_up;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto first = c.readCall();
    ASSERT_TRUE(first);
    client_gave_up.wait(5000ms);
    auto second = c.readCall();  // issued after the first timed out
    ASSERT_TRUE(second);
    EXPECT_EQ(first->xid & 0xffff, second->xid & 0xffff) << "expected the slot to be reused";
    EXPECT_NE(first->xid, second->xid) << "a reused slot must get a new xid";
    c.sendReply(first->xid, readReplyHeader(kSize), patternBytes(kSize, 1));  // stale
    c.sendReply(second->xid, readReplyHeader(kSize), patternBytes(kSize, 2));
    c.waitClosed(5000ms);
  });
  CanaryBuffer first_buf(kSize), second_buf(kSize);
  auto pc = connectClient(peer, 300ms);
  ASSERT_TRUE(pc.client);
  auto io1 = startRead(*pc.client, first_buf.iov(), 0, GetParam().mode);
  auto r1 = io1.result->wait(5000ms);
  ASSERT_TRUE(r1.has_value());
  ASSERT_FALSE(*r1);
  EXPECT_EQ(r1->error().code, ETIMEDOUT);
  auto io2 = startRead(*pc.client, second_buf.iov(), 0, GetParam().mode);
  client_gave_up.notify();
  auto r2 = io2.result->wait(5000ms);
  ASSERT_TRUE(r2.has_value());
  ASSERT_TRUE(*r2) << r2->error().toString();
  EXPECT_TRUE(second_buf.contents() == patternBytes(kSize, 2))
      << "the stale reply's payload completed the slot's next call";
  ASSERT_TRUE(waitUntil([&] { return pc->stats().bytes_discarded >= kSize; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(first_buf.untouched());
  EXPECT_TRUE(second_buf.guardsIntact());
  EXPECT_EQ(pc->stats().late_replies, 1u);
}

INSTANTIATE_TEST_SUITE_P(Modes, LateReply, kBothModes,
                         [](const auto& info) { return modeName(info.param.mode); });

// ---- A2: cancel / timeout in the middle of a payload -------------------------

enum class Trigger { kTimeout, kCancel };
struct MidPayloadParam {
  Trigger trigger;
  IoMode mode;
  std::string name() const {
    return std::string(trigger == Trigger::kTimeout ? "Timeout" : "Cancel") + modeName(mode);
  }
};
[[maybe_unused]] void PrintTo(const MidPayloadParam& p, std::ostream* os) {
  *os << p.name();
}

class MidPayload : public ::testing::TestWithParam<MidPayloadParam> {};

// The peer sends half the payload, pauses past the deadline (or the cancel),
// then sends the rest. The call is pinned while its payload is being
// received: it completes only at the next piece boundary after the peer
// resumes, the rest is drained, and no byte is written into the caller's
// buffer after the completion callback ran.
TEST_P(MidPayload, CompletionWaitsForPieceBoundaryAndNothingLandsAfterIt) {
  const Trigger trigger = GetParam().trigger;
  const IoMode mode = GetParam().mode;
  constexpr size_t kSize = 256 * 1024;
  constexpr size_t kPiece = 16 * 1024;
  constexpr size_t kHalf = 128 * 1024;
  const std::string payload = patternBytes(kSize, 5);
  Signal half_sent, resume, rest_sent;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    std::string header = readReplyHeader(kSize).SerializeAsString();
    rpc::Preamble p;
    p.type = rpc::FrameType::kReply;
    p.xid = call->xid;
    p.header_length = static_cast<uint32_t>(header.size());
    p.payload_length = kSize;
    c.sendPreamble(p);
    c.sendRaw(header);
    c.sendRaw(std::string_view(payload).substr(0, kHalf));
    half_sent.notify();
    resume.wait(5000ms);
    c.sendRaw(std::string_view(payload).substr(kHalf));
    rest_sent.notify();
    answerRead(c, 6);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, trigger == Trigger::kTimeout ? 200ms : 30000ms, kPiece);
  ASSERT_TRUE(pc.client);

  std::string at_completion;
  uint64_t received_at_completion = 0;
  auto start = Clock::now();
  auto io = startRead(*pc.client, buf.iov(), 0, mode, [&] {
    // Runs on the transport thread, at the moment of completion.
    at_completion = buf.all();
    received_at_completion = pc.transport->counters().payload_bytes_received.load();
  });
  ASSERT_TRUE(half_sent.wait(5000ms));
  ASSERT_TRUE(waitUntil([&] {
    return pc.transport->counters().payload_bytes_received.load() >= kHalf;
  })) << "client did not receive the first half";
  if (trigger == Trigger::kCancel) {
    pc->cancel(io.handle);
  } else {
    while (msSince(start) < 200ms) std::this_thread::sleep_for(10ms);
  }
  // Well past the deadline / the cancel: the payload is mid-flight into the
  // destination, so the call must still be pending (pinned).
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE(io.result->ready())
      << "call completed while its payload was still being received into the destination";
  resume.notify();

  auto r = io.result->wait(5000ms);
  ASSERT_TRUE(r.has_value()) << "call never completed after the peer resumed";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, trigger == Trigger::kTimeout ? ETIMEDOUT : ECANCELED)
      << r->error().toString();
  ASSERT_TRUE(rest_sent.wait(5000ms));
  // Everything not received into the destination by completion is drained.
  ASSERT_TRUE(waitUntil([&] {
    return pc->stats().bytes_discarded + received_at_completion >= kSize;
  })) << "rest of the payload was not drained";
  std::this_thread::sleep_for(100ms);
  EXPECT_TRUE(buf.all() == at_completion) << "bytes landed in the caller's buffer after completion";
  EXPECT_EQ(pc->stats().bytes_discarded + received_at_completion, kSize);
  // Completion came at the first piece boundary after the peer resumed.
  EXPECT_GE(received_at_completion, kHalf);
  EXPECT_LE(received_at_completion, kHalf + kPiece);
  EXPECT_TRUE(buf.guardsIntact());
  if (mode == IoMode::kDirect) {
    std::string got = buf.contents();
    EXPECT_TRUE(got.substr(0, received_at_completion) == payload.substr(0, received_at_completion));
    EXPECT_EQ(got.substr(received_at_completion),
              std::string(kSize - received_at_completion, kCanary));
  } else {
    EXPECT_TRUE(buf.untouched()) << "a failed regular read copied into the caller's buffer";
  }
  EXPECT_EQ(pc->stats().late_replies, 0u);
  expectConnectionStillWorks(pc, mode, 6);
}

INSTANTIATE_TEST_SUITE_P(All, MidPayload,
                         ::testing::Values(MidPayloadParam{Trigger::kTimeout, IoMode::kDirect},
                                           MidPayloadParam{Trigger::kTimeout, IoMode::kRegular},
                                           MidPayloadParam{Trigger::kCancel, IoMode::kDirect},
                                           MidPayloadParam{Trigger::kCancel, IoMode::kRegular}),
                         [](const auto& info) { return info.param.name(); });

// ---- A3: reply for an xid that was never issued ------------------------------

struct BadXidCase {
  const char* name;
  std::function<uint64_t(uint64_t live_xid)> xid;
};

[[maybe_unused]] void PrintTo(const BadXidCase& c, std::ostream* os) {
  *os << c.name;
}

class NeverIssuedXid : public ::testing::TestWithParam<BadXidCase> {};

// A reply whose xid the client never issued means the stream cannot be
// trusted: the connection is closed, every pending call fails with EPROTO and
// a message saying why, and no byte of that reply reaches any buffer.
TEST_P(NeverIssuedXid, ClosesTheConnectionAndFailsPendingCalls) {
  constexpr size_t kSize = 8192;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    uint64_t bad = GetParam().xid(call->xid);
    c.sendReply(bad, readReplyHeader(kSize), patternBytes(kSize, 1));
    EXPECT_TRUE(c.waitClosed(3000ms)) << "client kept the connection open";
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 30000ms);
  ASSERT_TRUE(pc.client);
  auto start = Clock::now();
  auto io = startRead(*pc.client, buf.iov(), 0, IoMode::kDirect);
  auto r = io.result->wait(3000ms);
  ASSERT_TRUE(r.has_value()) << "pending call hung after a forged reply";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, EPROTO) << r->error().toString();
  EXPECT_NE(r->error().what.find("never issued"), std::string::npos) << r->error().what;
  EXPECT_LT(msSince(start), 3000ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(buf.untouched());
  EXPECT_GE(pc->stats().protocol_errors, 1u);
  EXPECT_EQ(pc->stats().late_replies, 0u);
  // The connection is gone: the next call fails fast instead of hanging.
  CanaryBuffer buf2(100);
  auto io2 = startRead(*pc.client, buf2.iov(), 0, IoMode::kDirect);
  auto r2 = io2.result->wait(2000ms);
  ASSERT_TRUE(r2.has_value()) << "call on a closed connection hung";
  EXPECT_FALSE(*r2);
  EXPECT_TRUE(buf2.untouched());
}

INSTANTIATE_TEST_SUITE_P(
    Xids, NeverIssuedXid,
    ::testing::Values(
        BadXidCase{"FutureGenerationSameSlot", [](uint64_t x) { return x + (5ull << 16); }},
        BadXidCase{"UnusedSlot", [](uint64_t x) { return (x & ~0xffffull) | 7; }},
        BadXidCase{"SlotBeyondCapacity", [](uint64_t x) { return (x & ~0xffffull) | 4000; }},
        BadXidCase{"GenerationZero", [](uint64_t x) { return x & 0xffff; }},
        BadXidCase{"AllOnes", [](uint64_t) { return ~0ull; }}),
    [](const auto& info) { return std::string(info.param.name); });

// ---- A4: reply payload bigger than the destination ---------------------------

class OversizeReply : public ::testing::TestWithParam<Mode> {};

// A reply carrying more bytes than the destination holds fails that call with
// EMSGSIZE; nothing is written (not even the part that would fit), the guard
// bytes around the buffer stay intact, and the connection keeps working.
TEST_P(OversizeReply, FailsTheCallWithEmsgsizeAndWritesNothing) {
  constexpr size_t kSize = 4096;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    c.sendReply(call->xid, readReplyHeader(2 * kSize), patternBytes(2 * kSize, 1));
    answerRead(c, 7);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(kSize, 64 * 1024);
  auto pc = connectClient(peer, 10000ms);
  ASSERT_TRUE(pc.client);
  auto io = startRead(*pc.client, buf.iov(), 0, GetParam().mode);
  auto r = io.result->wait(5000ms);
  ASSERT_TRUE(r.has_value());
  ASSERT_FALSE(*r) << "oversize reply accepted";
  EXPECT_EQ(r->error().code, EMSGSIZE) << r->error().toString();
  ASSERT_TRUE(waitUntil([&] { return pc->stats().bytes_discarded >= 2 * kSize; }));
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(buf.untouched()) << "oversize reply wrote into or around the buffer";
  EXPECT_EQ(pc->stats().bytes_discarded, 2 * kSize);
  expectConnectionStillWorks(pc, GetParam().mode, 7);
}

INSTANTIATE_TEST_SUITE_P(Modes, OversizeReply, kBothModes,
                         [](const auto& info) { return modeName(info.param.mode); });

// A payload on the reply to a call that takes none (OPEN) is refused too.
TEST(ClientVsScriptedPeer, PayloadOnAReplyThatTakesNoneIsRefused) {
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    pb::Reply reply;
    reply.set_fh(1);
    c.sendReply(call->xid, reply, patternBytes(1000, 1));
    answerRead(c, 8);
    c.waitClosed(5000ms);
  });
  auto pc = connectClient(peer, 10000ms);
  ASSERT_TRUE(pc.client);
  auto fh = pc->open("f", O_RDONLY);
  ASSERT_FALSE(fh);
  EXPECT_EQ(fh.error().code, EMSGSIZE) << fh.error().toString();
  expectConnectionStillWorks(pc, IoMode::kDirect, 8);
}

// A READ reply whose count disagrees with the bytes it carries is an error.
TEST(ClientVsScriptedPeer, ReadReplyCountDisagreeingWithPayloadIsAnError) {
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    c.sendReply(call->xid, readReplyHeader(4096), patternBytes(1000, 1));
    answerRead(c, 9);
    c.waitClosed(5000ms);
  });
  CanaryBuffer buf(4096);
  auto pc = connectClient(peer, 10000ms);
  ASSERT_TRUE(pc.client);
  auto r = pc->preadvDirect(kFh, buf.iov(), 0);
  ASSERT_FALSE(r) << "count/payload mismatch accepted as " << *r << " bytes";
  EXPECT_EQ(r.error().code, EPROTO) << r.error().toString();
  expectConnectionStillWorks(pc, IoMode::kDirect, 9);
}

// ---- A5: a broken stream -----------------------------------------------------

struct StreamCase {
  const char* name;
  // Bytes the peer sends in answer to the call with this xid.
  std::function<std::string(uint64_t xid)> bytes;
  int code;             // expected errno of the pending call
  const char* message;  // expected in the error text
  bool protocol_error;  // counted in stats().protocol_errors
};

std::string replyPreamble(uint64_t xid, uint32_t header_length, uint64_t payload_length) {
  return rawPreamble(rpc::kMagic, rpc::kVersion, 2, 0, header_length, 0, xid, payload_length);
}

[[maybe_unused]] void PrintTo(const StreamCase& c, std::ostream* os) {
  *os << c.name;
}

class BrokenStream : public ::testing::TestWithParam<StreamCase> {};

// Whatever the peer sends, a pending call fails promptly (long before its
// timeout) with a clear error, the connection is closed, the next call fails
// fast, and nothing is written into the buffer after the failure.
TEST_P(BrokenStream, FailsPendingCallsPromptlyWithAClearError) {
  constexpr size_t kSize = 8192;
  const StreamCase& sc = GetParam();
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    c.sendRaw(sc.bytes(call->xid));
    // Truncation cases: close right away. Others: the client must close.
    if (!sc.protocol_error) return;
    EXPECT_TRUE(c.waitClosed(3000ms)) << "client kept a broken stream open";
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 30000ms);
  ASSERT_TRUE(pc.client);
  auto start = Clock::now();
  std::string at_completion;
  auto io =
      startRead(*pc.client, buf.iov(), 0, IoMode::kDirect, [&] { at_completion = buf.all(); });
  auto r = io.result->wait(3000ms);
  ASSERT_TRUE(r.has_value()) << "pending call hung on a broken stream";
  ASSERT_FALSE(*r) << "broken stream produced a successful read";
  EXPECT_EQ(r->error().code, sc.code) << r->error().toString();
  EXPECT_NE(r->error().what.find(sc.message), std::string::npos) << r->error().what;
  EXPECT_LT(msSince(start), 3000ms);
  if (sc.protocol_error) {
    EXPECT_GE(pc->stats().protocol_errors, 1u);
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(buf.all() == at_completion) << "bytes landed after the call failed";
  EXPECT_TRUE(buf.guardsIntact());

  CanaryBuffer buf2(100);
  auto io2 = startRead(*pc.client, buf2.iov(), 0, IoMode::kDirect);
  auto r2 = io2.result->wait(2000ms);
  ASSERT_TRUE(r2.has_value()) << "call on a closed connection hung";
  EXPECT_FALSE(*r2);
}

std::string header(const pb::Reply& r) {
  return r.SerializeAsString();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BrokenStream,
    ::testing::Values(
        StreamCase{"Garbage", [](uint64_t) { return patternBytes(200, 77); }, EPROTO, "bad magic",
                   true},
        StreamCase{"HttpResponse",
                   [](uint64_t) {
                     return std::string("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
                   },
                   EPROTO, "bad magic", true},
        StreamCase{"BadMagic",
                   [](uint64_t x) { return rawPreamble(0x12345678, 1, 2, 0, 0, 0, x, 0); }, EPROTO,
                   "bad magic", true},
        StreamCase{"BadVersion",
                   [](uint64_t x) { return rawPreamble(rpc::kMagic, 9, 2, 0, 0, 0, x, 0); },
                   EPROTONOSUPPORT, "version", true},
        StreamCase{"UnknownType",
                   [](uint64_t x) { return rawPreamble(rpc::kMagic, 1, 3, 0, 0, 0, x, 0); }, EPROTO,
                   "message type", true},
        StreamCase{"FlagsSet",
                   [](uint64_t x) { return rawPreamble(rpc::kMagic, 1, 2, 0x8, 0, 0, x, 0); },
                   EPROTO, "flags", true},
        StreamCase{"ReservedSet",
                   [](uint64_t x) { return rawPreamble(rpc::kMagic, 1, 2, 0, 0, 1, x, 0); }, EPROTO,
                   "reserved", true},
        StreamCase{"CallInsteadOfReply",
                   [](uint64_t x) {
                     pb::Call call;
                     call.set_op(pb::OP_READ);
                     std::string h = call.SerializeAsString();
                     return rawPreamble(rpc::kMagic, 1, 1, 0, static_cast<uint32_t>(h.size()), 0, x,
                                        0) +
                            h;
                   },
                   EPROTO, "sent a call", true},
        StreamCase{"OversizeHeaderLength",
                   [](uint64_t x) { return replyPreamble(x, rpc::kMaxHeaderLength + 1, 0); },
                   EMSGSIZE, "header length", true},
        StreamCase{"PayloadLengthOverLimit",
                   [](uint64_t x) { return replyPreamble(x, 0, rpc::kMaxPayloadLength + 1); },
                   EMSGSIZE, "payload length", true},
        StreamCase{"PayloadLengthAllOnes", [](uint64_t x) { return replyPreamble(x, 0, ~0ull); },
                   EMSGSIZE, "payload length", true},
        StreamCase{
            "HeaderDoesNotParse",
            [](uint64_t x) { return replyPreamble(x, 4, 0) + std::string("\x0f\x0f\x0f\x0f"); },
            EPROTO, "does not parse", true},
        StreamCase{"TruncatedPreambleThenClose",
                   [](uint64_t x) { return replyPreamble(x, 0, 0).substr(0, 13); }, ECONNRESET,
                   "receive", false},
        StreamCase{"TruncatedHeaderThenClose",
                   [](uint64_t x) {
                     std::string h = header(readReplyHeader(8192));
                     return replyPreamble(x, static_cast<uint32_t>(h.size()), 8192) +
                            h.substr(0, h.size() / 2);
                   },
                   ECONNRESET, "reply header", false},
        StreamCase{"TruncatedPayloadThenClose",
                   [](uint64_t x) {
                     std::string h = header(readReplyHeader(8192));
                     return replyPreamble(x, static_cast<uint32_t>(h.size()), 8192) + h +
                            patternBytes(3000, 1);
                   },
                   ECONNRESET, "payload", false},
        StreamCase{"CloseWithoutReply", [](uint64_t) { return std::string(); }, ECONNRESET,
                   "receive", false}),
    [](const auto& info) { return std::string(info.param.name); });

// Garbage that arrives while no call is pending still closes the connection;
// the next call fails fast instead of hanging.
TEST(ClientVsScriptedPeer, GarbageWithNoCallPendingFailsTheNextCallFast) {
  Signal garbage_sent;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    c.sendRaw(patternBytes(100, 3));
    garbage_sent.notify();
    c.waitClosed(3000ms);
  });
  auto pc = connectClient(peer, 30000ms);
  ASSERT_TRUE(pc.client);
  ASSERT_TRUE(garbage_sent.wait());
  ASSERT_TRUE(waitUntil([&] { return pc->stats().protocol_errors >= 1; }));
  CanaryBuffer buf(100);
  auto io = startRead(*pc.client, buf.iov(), 0, IoMode::kDirect);
  auto r = io.result->wait(2000ms);
  ASSERT_TRUE(r.has_value()) << "call on a closed connection hung";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, EPROTO) << r->error().toString();
  EXPECT_TRUE(buf.untouched());
}

// ---- writes: the caller's memory is in use until the frame has left ----------

enum class WriteEnd { kEarlyReply, kCancel, kTimeout };
struct WriteEndParam {
  WriteEnd end;
  const char* name;
};
[[maybe_unused]] void PrintTo(const WriteEndParam& p, std::ostream* os) {
  *os << p.name;
}

class DirectWriteInFlight : public ::testing::TestWithParam<WriteEndParam> {};

// A direct write is gathered from the caller's memory while the socket takes
// it. The peer stops reading half-way; meanwhile the call is answered early
// (a reply before the payload was read), cancelled, or times out. Completion
// must wait until the whole frame has left the caller's memory: the callback
// scribbles over the buffer (the caller owns it again), and the peer must
// still receive the original bytes.
TEST_P(DirectWriteInFlight, CompletesOnlyAfterThePayloadLeftUserMemory) {
  const WriteEnd end = GetParam().end;
  constexpr size_t kSize = 24 * 1024 * 1024;  // far more than socket buffers hold
  const std::string original = patternBytes(kSize, 21);
  Signal header_seen, payload_read;
  std::atomic<bool> payload_intact{false};
  ScriptedPeer peer([&](FrameSocket& c, int) {
    rpc::PreambleBytes pre{};
    ASSERT_TRUE(c.readExact(pre.data(), pre.size()));
    auto p = rpc::decodePreamble(pre);
    ASSERT_TRUE(p);
    std::string header(p->header_length, '\0');
    ASSERT_TRUE(c.readExact(header.data(), header.size()));
    ASSERT_EQ(p->payload_length, kSize);
    if (end == WriteEnd::kEarlyReply) {
      pb::Reply reply;
      reply.set_count(kSize);
      c.sendReply(p->xid, reply);  // before reading the payload
    }
    header_seen.notify();
    std::this_thread::sleep_for(600ms);  // stop reading: the write is stuck
    std::string payload(kSize, '\0');
    ASSERT_TRUE(c.readExact(payload.data(), payload.size(), 10000ms));
    payload_intact = payload == original;
    payload_read.notify();
    if (end != WriteEnd::kEarlyReply) {  // a late reply, to be drained
      pb::Reply reply;
      reply.set_count(kSize);
      c.sendReply(p->xid, reply);
    }
    answerRead(c, 22);
    c.waitClosed(5000ms);
  });
  std::string buffer = original;
  auto pc = connectClient(peer, end == WriteEnd::kTimeout ? 100ms : 30000ms);
  ASSERT_TRUE(pc.client);
  iovec iov{buffer.data(), buffer.size()};
  auto result = std::make_shared<AsyncResult>();
  auto cb = result->callback([&] { std::memset(buffer.data(), 'X', buffer.size()); });
  auto handle = pc->pwritevAsync(kFh, std::span<const iovec>(&iov, 1), 0, IoMode::kDirect,
                                 [result, cb](Result<size_t> r) { cb(std::move(r)); });
  ASSERT_TRUE(header_seen.wait(5000ms));
  if (end == WriteEnd::kCancel) pc->cancel(handle);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(result->ready()) << "write completed while its payload was still being sent";
  auto r = result->wait(10000ms);
  ASSERT_TRUE(r.has_value()) << "write never completed";
  if (end == WriteEnd::kEarlyReply) {
    ASSERT_TRUE(*r) << r->error().toString();
    EXPECT_EQ(**r, kSize);
  } else {
    ASSERT_FALSE(*r);
    EXPECT_EQ(r->error().code, end == WriteEnd::kCancel ? ECANCELED : ETIMEDOUT)
        << r->error().toString();
  }
  ASSERT_TRUE(payload_read.wait(10000ms)) << "peer never got the whole payload";
  EXPECT_TRUE(payload_intact.load())
      << "the peer received bytes written into the buffer after the call completed";
  expectConnectionStillWorks(pc, IoMode::kDirect, 22);
}

INSTANTIATE_TEST_SUITE_P(Ends, DirectWriteInFlight,
                         ::testing::Values(WriteEndParam{WriteEnd::kEarlyReply, "EarlyReply"},
                                           WriteEndParam{WriteEnd::kCancel, "Cancel"},
                                           WriteEndParam{WriteEnd::kTimeout, "Timeout"}),
                         [](const auto& info) { return std::string(info.param.name); });

// ---- liveness: a peer that stalls forever -------------------------------------

// A timeout must bound a call even when the peer stops sending in the middle
// of the reply payload (the call is pinned then): the transport may wait for
// a piece boundary, but not forever.
TEST(ClientVsScriptedPeer, PeerStallingMidPayloadForeverStillTimesOut) {
  constexpr size_t kSize = 256 * 1024;
  Signal release;
  ScriptedPeer peer([&](FrameSocket& c, int) {
    auto call = c.readCall();
    ASSERT_TRUE(call);
    std::string h = readReplyHeader(kSize).SerializeAsString();
    c.sendRaw(replyPreamble(call->xid, static_cast<uint32_t>(h.size()), kSize) + h +
              patternBytes(kSize / 2, 1));
    release.wait(10000ms);  // stall, connection open
  });
  CanaryBuffer buf(kSize);
  auto pc = connectClient(peer, 200ms, 16 * 1024);
  ASSERT_TRUE(pc.client);
  auto start = Clock::now();
  std::string at_completion;
  auto io =
      startRead(*pc.client, buf.iov(), 0, IoMode::kDirect, [&] { at_completion = buf.all(); });
  auto r = io.result->wait(5000ms);
  release.notify();
  ASSERT_TRUE(r.has_value()) << "call with a 200 ms timeout still pending after 5 s: a peer "
                                "that stalls mid-payload pins it forever";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, ETIMEDOUT) << r->error().toString();
  EXPECT_LT(msSince(start), 5000ms);
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(buf.all() == at_completion);
}

// Same for a write whose frame cannot leave because the peer never reads.
TEST(ClientVsScriptedPeer, PeerThatNeverReadsStillLetsAWriteTimeOut) {
  constexpr size_t kSize = 32 * 1024 * 1024;
  Signal release;
  ScriptedPeer peer([&](FrameSocket&, int) { release.wait(10000ms); });
  std::string data(kSize, 'w');
  auto pc = connectClient(peer, 200ms);
  ASSERT_TRUE(pc.client);
  iovec iov{data.data(), data.size()};
  auto result = std::make_shared<AsyncResult>();
  auto cb = result->callback();
  auto start = Clock::now();
  pc->pwritevAsync(kFh, std::span<const iovec>(&iov, 1), 0, IoMode::kDirect,
                   [result, cb](Result<size_t> r) { cb(std::move(r)); });
  auto r = result->wait(5000ms);
  release.notify();
  ASSERT_TRUE(r.has_value()) << "write with a 200 ms timeout still pending after 5 s: a peer "
                                "that never reads pins it forever";
  ASSERT_FALSE(*r);
  EXPECT_EQ(r->error().code, ETIMEDOUT) << r->error().toString();
  EXPECT_LT(msSince(start), 5000ms);
}

}  // namespace
}  // namespace zcio::test
