// Test helpers that speak the zcio frame over real loopback TCP sockets:
//
//  - FrameSocket: a blocking socket with deadline-bounded reads that sends and
//    receives zcio frames (well-formed or deliberately broken). Used as a raw
//    client against a real zcio-server, and as the server end of a
//    ScriptedPeer.
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
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "rpc/frame.h"
#include "rpc/zcio.pb.h"

namespace zcio::test {

using namespace std::chrono_literals;

struct RawFrame {
  rpc::Preamble preamble;
  std::string header;  // undecoded protobuf bytes
  std::string payload;
};

struct ReceivedCall {
  uint64_t xid = 0;
  rpc::pb::Call call;
  std::string payload;
};

struct ReceivedReply {
  uint64_t xid = 0;
  rpc::pb::Reply reply;
  std::string payload;
};

class FrameSocket {
 public:
  FrameSocket() = default;
  explicit FrameSocket(int fd) : fd_(fd) {}
  ~FrameSocket() { close(); }
  FrameSocket(FrameSocket&& other) noexcept;
  FrameSocket& operator=(FrameSocket&& other) noexcept;
  FrameSocket(const FrameSocket&) = delete;
  FrameSocket& operator=(const FrameSocket&) = delete;

  // A blocking TCP connection to 127.0.0.1:port (invalid() on failure).
  static FrameSocket connectTo(uint16_t port);

  bool valid() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void close();
  // Half-close: the other end reads EOF; we can still read.
  void shutdownWrite();

  // ---- writes: false if the other end is gone (never SIGPIPE) ----
  bool sendRaw(std::string_view bytes);
  bool sendPreamble(const rpc::Preamble& preamble);
  // A frame whose preamble says exactly what follows.
  bool sendFrame(rpc::FrameType type, uint64_t xid, std::string_view header,
                 std::string_view payload = {});
  bool sendReply(uint64_t xid, const rpc::pb::Reply& reply, std::string_view payload = {});
  bool sendCall(uint64_t xid, const rpc::pb::Call& call, std::string_view payload = {});

  // ---- reads: nullopt/false on EOF, error or deadline ----
  bool readExact(void* buffer, size_t length, std::chrono::milliseconds timeout = 5000ms);
  std::optional<RawFrame> readFrame(std::chrono::milliseconds timeout = 5000ms);
  std::optional<ReceivedCall> readCall(std::chrono::milliseconds timeout = 5000ms);
  std::optional<ReceivedReply> readReply(std::chrono::milliseconds timeout = 5000ms);
  // True once the other end has closed (EOF or reset) within `timeout`;
  // whatever arrives meanwhile is read and thrown away.
  bool waitClosed(std::chrono::milliseconds timeout = 5000ms);

 private:
  int fd_ = -1;
};

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
  int listen_fd_ = -1;
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
