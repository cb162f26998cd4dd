// SyncWaiter: the value set by a completion on another thread reaches the
// waiter whether it arrives while the waiter spins, after it fell asleep, or
// before it started waiting; nothing hangs and no wake-up is lost.
#include "fops/sync_waiter.h"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

namespace zcio::fops {
namespace {

using namespace std::chrono_literals;

TEST(SyncWaiter, ValueSetBeforeWaitIsReturned) {
  SyncWaiter<std::string> w(0us);
  w.set("early");
  EXPECT_EQ(w.wait(), "early");
}

TEST(SyncWaiter, SleepingWaiterIsWokenBySet) {
  SyncWaiter<int> w(0us);  // no spin: sleeps at once
  std::thread t([&] {
    std::this_thread::sleep_for(50ms);
    w.set(42);
  });
  auto waited = std::async(std::launch::async, [&] { return w.wait(); });
  ASSERT_EQ(waited.wait_for(5s), std::future_status::ready)
      << "a set() after the waiter slept was lost";
  EXPECT_EQ(waited.get(), 42);
  t.join();
}

TEST(SyncWaiter, SpinningWaiterSeesASetDuringItsSpin) {
  SyncWaiter<int> w(std::chrono::seconds(5));  // spins longer than the set takes
  std::thread t([&] {
    std::this_thread::sleep_for(5ms);
    w.set(7);
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(w.wait(), 7);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 4s);
  t.join();
}

// Sets racing the waiter's move from spinning to sleeping: every one lands.
TEST(SyncWaiter, NoLostWakeUpAcrossTheSpinToSleepEdge) {
  for (int i = 0; i < 2000; ++i) {
    auto w = std::make_unique<SyncWaiter<int>>(std::chrono::microseconds(i % 7));
    std::thread t([&, i] {
      if (i % 3 == 0) std::this_thread::yield();
      w->set(i);
    });
    ASSERT_EQ(w->wait(), i);
    t.join();
  }
}

}  // namespace
}  // namespace zcio::fops
