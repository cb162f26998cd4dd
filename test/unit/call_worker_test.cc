// CallWorker: calls run off the caller's thread in submission order, their
// results come back with the wake-up fd written, and forget() leaves nothing
// of an owner behind (it waits for that owner's running call).
#include "verbs/call_worker.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

namespace zcio::verbs {
namespace {

using namespace std::chrono_literals;

// Records the xids it sees and the thread; blocks on xid 99 until released.
class RecordingSession final : public rpc::ServerSession {
 public:
  Result<rpc::OutgoingReply> handle(rpc::IncomingCall call) override {
    {
      std::lock_guard<std::mutex> lock(mutex);
      seen.push_back(call.xid);
      thread = std::this_thread::get_id();
    }
    if (call.xid == 99) {
      entered.set_value();
      release.get_future().wait();
    }
    if (call.xid == 13) return makeError(EPROTO, "session refuses xid 13");
    rpc::OutgoingReply reply;
    reply.header.set_count(call.xid);
    return reply;
  }
  std::mutex mutex;
  std::vector<uint64_t> seen;
  std::thread::id thread;
  std::promise<void> entered;
  std::promise<void> release;
};

rpc::IncomingCall callWithXid(uint64_t xid) {
  rpc::IncomingCall call;
  call.xid = xid;
  return call;
}

bool readable(int fd, std::chrono::milliseconds limit) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(limit.count())) == 1;
}

class CallWorkerTest : public ::testing::Test {
 protected:
  void TearDown() override { ::close(fd_); }
  std::vector<CallWorker::Done> collect(CallWorker& worker, size_t count) {
    std::vector<CallWorker::Done> all;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    while (all.size() < count && std::chrono::steady_clock::now() < deadline) {
      if (!readable(fd_, 100ms)) continue;
      uint64_t n = 0;
      EXPECT_EQ(::read(fd_, &n, sizeof n), static_cast<ssize_t>(sizeof n));
      for (auto& d : worker.takeDone()) all.push_back(std::move(d));
    }
    return all;
  }
  int fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
};

TEST_F(CallWorkerTest, RunsCallsInOrderOnItsOwnThreadAndWakesTheOwner) {
  RecordingSession session;
  CallWorker worker(fd_);
  int owner = 0;
  std::vector<int> tags(20);
  for (uint64_t x = 0; x < 20; ++x) worker.submit(&owner, &tags[x], &session, callWithXid(x + 1));
  auto done = collect(worker, 20);
  ASSERT_EQ(done.size(), 20u);
  for (size_t i = 0; i < done.size(); ++i) {
    EXPECT_EQ(done[i].owner, &owner);
    EXPECT_EQ(done[i].tag, &tags[i]);
    if (i + 1 == 13) continue;  // the session refuses that one
    ASSERT_TRUE(done[i].reply.ok());
    EXPECT_EQ(done[i].reply->header.count(), i + 1);
  }
  std::vector<uint64_t> expected;
  for (uint64_t x = 1; x <= 20; ++x) expected.push_back(x);
  EXPECT_EQ(session.seen, expected);
  EXPECT_NE(session.thread, std::this_thread::get_id());
}

TEST_F(CallWorkerTest, ASessionErrorComesBackAsTheResult) {
  RecordingSession session;
  CallWorker worker(fd_);
  int owner = 0;
  worker.submit(&owner, nullptr, &session, callWithXid(13));
  worker.submit(&owner, nullptr, &session, callWithXid(14));
  auto done = collect(worker, 2);
  ASSERT_EQ(done.size(), 2u);
  ASSERT_FALSE(done[0].reply.ok());
  EXPECT_EQ(done[0].reply.error().code, EPROTO);
  ASSERT_TRUE(done[1].reply.ok());
  EXPECT_EQ(done[1].reply->header.count(), 14u);
}

TEST_F(CallWorkerTest, ForgetWaitsForTheRunningCallAndDropsTheRest) {
  RecordingSession blocked;
  RecordingSession other;
  CallWorker worker(fd_);
  int a = 0;
  int b = 0;
  worker.submit(&a, nullptr, &blocked, callWithXid(99));  // blocks inside the session
  worker.submit(&a, nullptr, &blocked, callWithXid(100));
  worker.submit(&b, nullptr, &other, callWithXid(7));
  blocked.entered.get_future().wait();
  auto forgotten = std::async(std::launch::async, [&] { worker.forget(&a); });
  EXPECT_EQ(forgotten.wait_for(100ms), std::future_status::timeout)
      << "forget() returned while the owner's call was still running";
  blocked.release.set_value();
  ASSERT_EQ(forgotten.wait_for(5s), std::future_status::ready);
  auto done = collect(worker, 1);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].owner, &b);  // a's result and its queued call are gone
  std::this_thread::sleep_for(50ms);
  EXPECT_TRUE(worker.takeDone().empty());
  EXPECT_EQ(blocked.seen, std::vector<uint64_t>{99});
}

}  // namespace
}  // namespace zcio::verbs
