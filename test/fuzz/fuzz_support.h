// Shared pieces of the libFuzzer targets (test/fuzz/*_fuzzer.cc):
//
//  - FuzzExport: a temp directory holding the export (a few small files) and
//    nothing else, so a path that escaped the export would show up beside it.
//  - FuzzServer: a real Brick behind the HELLO gate (AuthService) served by a
//    real TcpServer on loopback, in this process (its threads' coverage
//    guides the fuzzer): zcio-server's stack. startFuzzServer() is the one
//    place that sets it up.
//  - Blocking loopback sockets with deadlines come from the tests'
//    test/support/frame_socket.h (a misbehaving peer makes a target fail,
//    never hang; one that breaks the frame protocol is a finding).
//  - framedStream(): turns fuzz bytes into frames with a correct preamble, so
//    the fuzzer spends its time on headers and payloads, not on the magic.
//
// Any broken expectation calls fuzzFail(), which prints why and aborts:
// libFuzzer then saves the input as a crash.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "fops/brick.h"
#include "rpc/auth_service.h"
#include "rpc/frame.h"
#include "rpc/shared_key.h"
#include "rpc/zcio.pb.h"
#include "tcp/server.h"
#include "test/support/frame_socket.h"

namespace zcio::fuzz {

using namespace std::chrono_literals;

[[noreturn]] void fuzzFail(const std::string& why);

// Server logs go to error level unless ZCIO_LOG is set (one line per
// connection would dominate a fuzzing run).
void quietLogs();

// Files every export starts with; "probe" is only ever read by the harness.
inline constexpr std::string_view kProbeFile = "probe";
inline constexpr std::string_view kProbeContents = "zcio fuzz probe\n";

class FuzzExport {
 public:
  FuzzExport();  // fuzzFail() if the directories cannot be made
  ~FuzzExport();
  FuzzExport(const FuzzExport&) = delete;
  FuzzExport& operator=(const FuzzExport&) = delete;

  const std::string& directory() const { return export_; }
  // fuzzFail() unless the parent holds exactly the export directory.
  void checkConfined() const;

 private:
  std::string parent_;
  std::string export_;
};

// The key of keyed fuzz servers (a fuzzer cannot forge its proofs, so those
// exercise the handshake; calls past it need the no-auth mode).
inline constexpr std::string_view kFuzzKey = "zcio-fuzz-shared-key-0123456789";

struct FuzzServer {
  std::unique_ptr<fops::Brick> brick;
  std::unique_ptr<rpc::AuthService> auth;
  std::unique_ptr<tcp::TcpServer> server;
  uint16_t port() const { return server->port(); }
};

// keyed: AuthService with kFuzzKey (zcio-server --key-file), else the no-auth
// mode (--auth none). Small I/O limits keep replies (and the fuzzer) fast;
// everything else is the server's defaults. New server options are chosen
// here.
FuzzServer startFuzzServer(const std::string& directory, bool keyed = false);

// Fuzz bytes as frames: records of [u16 header length][header][u16 payload
// length][payload] (little-endian; a short record takes what is left), each
// sent with a correct preamble of `type` and the xid `xid_of(index)`.
std::string framedStream(std::string_view records, rpc::FrameType type,
                         const std::function<uint64_t(size_t)>& xid_of);
// The inverse, for the corpus generator: one record.
std::string framedRecord(std::string_view header, std::string_view payload);

}  // namespace zcio::fuzz
