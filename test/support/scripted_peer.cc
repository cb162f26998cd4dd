#include "test/support/scripted_peer.h"

#include <sys/socket.h>

#include <random>
#include <stdexcept>

#include <gtest/gtest.h>

namespace zcio::test {
namespace {

using Clock = std::chrono::steady_clock;

void putLe(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

}  // namespace

// In a test, a peer that breaks the protocol fails the test (frame_socket.h).
void reportPeerError(const std::string& what) {
  ADD_FAILURE() << what;
}

// ---- Signal ---------------------------------------------------------------

void Signal::notify() {
  std::lock_guard lock(mutex_);
  set_ = true;
  cv_.notify_all();
}

bool Signal::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return set_; });
}

bool Signal::isSet() {
  std::lock_guard lock(mutex_);
  return set_;
}

// ---- ScriptedPeer ---------------------------------------------------------

ScriptedPeer::ScriptedPeer(Script script) : script_(std::move(script)) {
  if (!listener_.valid()) throw std::runtime_error("ScriptedPeer: " + listener_.error());
  port_ = listener_.port();
  thread_ = std::thread([this] { run(); });
}

ScriptedPeer::~ScriptedPeer() {
  stop();
}

void ScriptedPeer::run() {
  for (int index = 0; !stopping_.load(); ++index) {
    // A short deadline so stop() is noticed without closing the fd under accept().
    FrameSocket connection = listener_.accept(20ms);
    if (!connection.valid()) {
      --index;
      continue;
    }
    {
      std::lock_guard lock(mutex_);
      current_fd_ = connection.fd();
    }
    if (!stopping_.load()) script_(connection, index);
    {
      std::lock_guard lock(mutex_);
      current_fd_ = -1;
    }
    connection.close();
    scripts_done_.fetch_add(1);
  }
}

bool ScriptedPeer::waitScriptsDone(int count, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (scripts_done_.load() < count) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

void ScriptedPeer::stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
    // Wakes a script blocked in a read; the fd itself is closed by run().
    if (current_fd_ >= 0) ::shutdown(current_fd_, SHUT_RDWR);
  }
  if (thread_.joinable()) thread_.join();
  listener_.close();
}

// ---- helpers --------------------------------------------------------------

std::string patternBytes(size_t length, uint64_t seed) {
  std::string data(length, '\0');
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  for (size_t i = 0; i < length; i += 8) {
    uint64_t v = rng();
    for (size_t b = 0; b < 8 && i + b < length; ++b) data[i + b] = static_cast<char>(v >> (8 * b));
  }
  return data;
}

rpc::pb::Reply readReplyHeader(uint64_t count) {
  rpc::pb::Reply reply;
  reply.set_count(count);
  return reply;
}

std::string rawPreamble(uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
                        uint32_t header_length, uint32_t reserved, uint64_t xid,
                        uint64_t payload_length) {
  std::string out;
  putLe(out, magic, 4);
  putLe(out, version, 1);
  putLe(out, type, 1);
  putLe(out, flags, 2);
  putLe(out, header_length, 4);
  putLe(out, reserved, 4);
  putLe(out, xid, 8);
  putLe(out, payload_length, 8);
  return out;
}

}  // namespace zcio::test
