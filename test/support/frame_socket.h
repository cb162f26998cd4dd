// A blocking loopback TCP socket that speaks the zcio frame, for tests and
// fuzzers: deadline-bounded reads (a misbehaving peer makes the caller fail,
// never hang), sends of well-formed or deliberately broken frames. Used as a
// raw client against a real server, as the server end of a ScriptedPeer
// (scripted_peer.h), and by the libFuzzer harnesses (test/fuzz/).
//
// No gtest here, so the fuzzers (built without it) link it too: when the other
// end breaks the protocol (a preamble that does not decode, a frame of the
// wrong type, a header that does not parse) the read returns nullopt and calls
// reportPeerError(), which each user defines: gtest's ADD_FAILURE in
// test/support/scripted_peer.cc, a fuzzing finding in test/fuzz/fuzz_support.cc.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "rpc/frame.h"
#include "rpc/zcio.pb.h"

namespace zcio::test {

using namespace std::chrono_literals;

// Defined by each user of this file (see above); `what` says what was wrong.
void reportPeerError(const std::string& what);

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

// The bytes of one frame whose preamble says exactly what follows.
std::string encodeFrame(rpc::FrameType type, uint64_t xid, std::string_view header,
                        std::string_view payload = {});

// A listener on 127.0.0.1 with a free port.
class LoopbackListener {
 public:
  LoopbackListener();  // !valid() on failure, error() says why
  ~LoopbackListener() { close(); }
  LoopbackListener(const LoopbackListener&) = delete;
  LoopbackListener& operator=(const LoopbackListener&) = delete;

  bool valid() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }
  // One connection with TCP_NODELAY, or an invalid socket at the deadline.
  FrameSocket accept(std::chrono::milliseconds timeout);
  void close();

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
  std::string error_;
};

}  // namespace zcio::test
