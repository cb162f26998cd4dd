// Test helpers that speak the zcio frame over real loopback TCP sockets:
//
//  - FrameSocket (frame_socket.h): a blocking socket with deadline-bounded
//    reads that sends and receives zcio frames.
//  - ScriptedPeer: a loopback listener on a free port, running in its own
//    thread, that hands every accepted connection to a script the test wrote
//    (read calls, delay, reply out of order, lie about lengths, send garbage,
//    truncate and close...). The script runs on the peer's thread; gtest
//    assertions (EXPECT_*/ADD_FAILURE) work there.
//  - Signal: a one-shot event to sequence the test thread and the script.
//
// Every blocking call has a deadline, so a misbehaving library makes a test
// fail, never hang.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "rpc/zcio.pb.h"
#include "test/support/frame_socket.h"

namespace zcio::test {

using namespace std::chrono_literals;

// One-shot, thread-safe event.
class Signal {
 public:
  void notify();
  bool wait(std::chrono::milliseconds timeout = 5000ms);
  bool isSet();

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool set_ = false;
};

class ScriptedPeer {
 public:
  // Runs for every accepted connection, in order (index 0, 1, ...) on the
  // peer's thread. When it returns, the peer closes that connection (unless
  // the script already did) and accepts the next one.
  using Script = std::function<void(FrameSocket& connection, int index)>;

  explicit ScriptedPeer(Script script);
  ~ScriptedPeer();  // stop()
  ScriptedPeer(const ScriptedPeer&) = delete;
  ScriptedPeer& operator=(const ScriptedPeer&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  // Number of scripts that have returned so far.
  int scriptsDone() const { return scripts_done_.load(); }
  // Waits until `count` scripts have returned.
  bool waitScriptsDone(int count, std::chrono::milliseconds timeout = 5000ms);
  // Stops accepting, shuts the current connection down (its script's reads
  // then fail), joins the thread. Idempotent.
  void stop();

 private:
  void run();

  Script script_;
  LoopbackListener listener_;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> scripts_done_{0};
  std::mutex mutex_;  // guards current_fd_
  int current_fd_ = -1;
};

// Deterministic pseudo-random bytes (same seed, same bytes).
std::string patternBytes(size_t length, uint64_t seed);

// A READ reply header: count = payload bytes, error 0.
rpc::pb::Reply readReplyHeader(uint64_t count);

// Preamble bytes with every field settable, including ones encodePreamble
// always writes correctly (magic, version, reserved), for malformed frames.
std::string rawPreamble(uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
                        uint32_t header_length, uint32_t reserved, uint64_t xid,
                        uint64_t payload_length);

}  // namespace zcio::test
