// SyncWaiter: where a synchronous call waits for its completion.
//
// It spins for up to `spin` before it sleeps: a reply over loopback or RDMA
// often arrives within tens of microseconds, sooner than a sleeping thread is
// woken (a futex wake-up, and on a VM an idle-state exit, can cost as much as
// the round trip itself). Spinning burns the caller's CPU for at most `spin`
// per call, as MPI and UCX progress loops do; a spin of 0 sleeps at once.
#pragma once

#include <atomic>
#include <chrono>
#include <optional>

namespace zcio::fops {

template <typename T>
class SyncWaiter {
 public:
  explicit SyncWaiter(std::chrono::nanoseconds spin) : spin_(spin) {}
  SyncWaiter(const SyncWaiter&) = delete;
  SyncWaiter& operator=(const SyncWaiter&) = delete;

  // From the completion, once. A futex wake only if the waiter sleeps (a
  // mutex and condition variable would add a lock hand-off to every wake-up).
  void set(T value) {
    value_.emplace(std::move(value));
    done_.store(1, std::memory_order_release);
    done_.notify_one();
  }

  T wait() {
    if (spin_.count() > 0) {
      auto until = std::chrono::steady_clock::now() + spin_;
      for (unsigned i = 1; !done_.load(std::memory_order_acquire); ++i) {
        if (i % 64 == 0 && std::chrono::steady_clock::now() >= until) break;
        relax();
      }
    }
    done_.wait(0, std::memory_order_acquire);
    return std::move(*value_);
  }

 private:
  static void relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  std::chrono::nanoseconds spin_;
  std::atomic<int> done_{0};  // int: futex-sized, so wait/notify are direct futex calls
  std::optional<T> value_;
};

}  // namespace zcio::fops
