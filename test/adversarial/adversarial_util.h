// Small helpers shared by the adversarial tests.
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <future>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"

namespace zcio::test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline constexpr char kCanary = static_cast<char>(0xA5);

// A destination of `size` bytes with `guard` canary bytes on both sides; the
// whole allocation starts out as kCanary.
class CanaryBuffer {
 public:
  explicit CanaryBuffer(size_t size, size_t guard = 4096)
      : size_(size), guard_(guard), bytes_(size + 2 * guard, kCanary) {}

  char* data() { return bytes_.data() + guard_; }
  size_t size() const { return size_; }
  std::span<const iovec> iov() {
    iov_ = {iovec{data(), size_}};
    return iov_;
  }
  // The destination only.
  std::string contents() const { return std::string(bytes_.data() + guard_, size_); }
  // Everything, guards included.
  std::string all() const { return std::string(bytes_.data(), bytes_.size()); }
  bool untouched() const {
    for (char c : bytes_) {
      if (c != kCanary) return false;
    }
    return true;
  }
  bool guardsIntact() const {
    for (size_t i = 0; i < guard_; ++i) {
      if (bytes_[i] != kCanary || bytes_[guard_ + size_ + i] != kCanary) return false;
    }
    return true;
  }

 private:
  size_t size_;
  size_t guard_;
  std::vector<char> bytes_;
  std::vector<iovec> iov_;
};

// Collects an async I/O result; the callback may run on any thread.
class AsyncResult {
 public:
  AsyncResult() : future_(promise_.get_future()) {}
  // `before` runs inside the callback, before the result is published (on
  // the transport's thread: it sees the memory exactly as it was at
  // completion).
  std::function<void(Result<size_t>)> callback(std::function<void()> before = {}) {
    return [this, before = std::move(before)](Result<size_t> r) {
      if (before) before();
      promise_.set_value(std::move(r));
    };
  }
  bool ready() { return future_.wait_for(0s) == std::future_status::ready; }
  std::optional<Result<size_t>> wait(std::chrono::milliseconds timeout) {
    if (future_.wait_for(timeout) != std::future_status::ready) return std::nullopt;
    return future_.get();
  }

 private:
  std::promise<Result<size_t>> promise_;
  std::future<Result<size_t>> future_;
};

// Polls `condition` until it holds or `timeout` passes.
inline bool waitUntil(const std::function<bool()>& condition,
                      std::chrono::milliseconds timeout = 3000ms) {
  auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

inline std::chrono::milliseconds msSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

}  // namespace zcio::test
