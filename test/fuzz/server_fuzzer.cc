// The server's call handling: a real Brick behind a real TcpServer (loopback,
// in this process). Each input goes to a fresh connection, then the harness
// half-closes and reads whatever comes back until the server closes.
//
// Input: byte 0 picks the mode, the rest is the stream.
//   bit 0 clear: the rest is written as it is (framing, preamble checks);
//   bit 0 set:   the rest is records (see framedStream) sent as Call frames
//                with correct preambles and xids 1, 2, ... (headers, Brick);
//   bit 1: to the server with a shared key (the HELLO handshake, which a
//          fuzzer cannot pass), else to the no-auth one (every call served).
//
// Findings besides sanitizer reports: the server keeps a half-closed
// connection open for 8 s; a path escapes the export; every 64 inputs (and
// the first) a fresh connection's STAT of the probe file must succeed on the
// no-auth server and must not on the keyed one.
#include <cerrno>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "test/fuzz/fuzz_support.h"

namespace {

using namespace zcio;
using namespace std::chrono_literals;
namespace pb = rpc::pb;

struct Harness {
  fuzz::FuzzExport exported;  // declared first: outlives the servers
  fuzz::FuzzServer open = fuzz::startFuzzServer(exported.directory());
  fuzz::FuzzServer keyed = fuzz::startFuzzServer(exported.directory(), true);
  uint64_t inputs = 0;
};

// A fresh loopback connection to our own server. Each input's connection
// ends in TIME_WAIT on this side (the harness half-closes first), so at a
// few thousand inputs a second the local ports can run out: EADDRNOTAVAIL is
// the client's limit, not a finding, and is waited out (seen in CI: a
// "server no longer accepts connections" finding with no server change).
// Any other failure to connect is a finding, with its errno.
test::FrameSocket connectOrFail(uint16_t port) {
  for (int attempt = 0;; ++attempt) {
    errno = 0;
    auto socket = test::FrameSocket::connectTo(port);
    if (socket.valid()) return socket;
    int err = errno;
    if (err != EADDRNOTAVAIL || attempt == 200)
      fuzz::fuzzFail("server no longer accepts connections: " + std::string(std::strerror(err)));
    std::this_thread::sleep_for(50ms);
  }
}

Harness& harness() {
  static bool quiet = (fuzz::quietLogs(), true);
  (void)quiet;
  static Harness h;  // stopped and removed at exit
  return h;
}

// A STAT of the probe file on a fresh connection: served by the no-auth
// server, refused (an error reply or a close) by the keyed one before HELLO.
void checkServes(uint16_t port, bool keyed) {
  auto socket = connectOrFail(port);
  pb::Call call;
  call.set_op(pb::OP_STAT);
  call.set_path(std::string(fuzz::kProbeFile));
  constexpr uint64_t kXid = 77;
  if (!socket.sendRaw(
          test::encodeFrame(rpc::FrameType::kCall, kXid, call.SerializeAsString(), {}))) {
    fuzz::fuzzFail("server closed before a valid STAT was sent");
  }
  auto frame = socket.readFrame(5000ms);
  pb::Reply reply;
  if (keyed) {
    if (frame && reply.ParseFromString(frame->header) && reply.error() == 0) {
      fuzz::fuzzFail("the keyed server served a STAT before HELLO");
    }
    return;
  }
  if (!frame) fuzz::fuzzFail("no reply to a valid STAT within 5 s");
  if (frame->preamble.type != rpc::FrameType::kReply || frame->preamble.xid != kXid ||
      !reply.ParseFromString(frame->header) || reply.error() != 0 ||
      reply.attr().size() != fuzz::kProbeContents.size()) {
    fuzz::fuzzFail("a valid STAT got a wrong reply: " + reply.ShortDebugString());
  }
}

// A HELLO to the keyed server: its thread sets up OpenSSL's per-thread
// random state now, not inside an input (where LeakSanitizer, checking mid-
// run, could take those one-time allocations for a leak).
void warmUp(const Harness& h) {
  auto socket = test::FrameSocket::connectTo(h.keyed.port());
  pb::Call call;
  call.set_op(pb::OP_HELLO);
  call.mutable_hello()->set_step(1);
  call.mutable_hello()->set_nonce(std::string(rpc::kNonceSize, 'w'));
  if (!socket.sendRaw(test::encodeFrame(rpc::FrameType::kCall, 1, call.SerializeAsString(), {})) ||
      !socket.readFrame(5000ms)) {
    fuzz::fuzzFail("the keyed server did not answer HELLO");
  }
}

}  // namespace

// Servers start here, outside any input, so their one-time allocations never
// count as an input's leak.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  warmUp(harness());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = harness();
  if (h.inputs++ % 64 == 0) {
    checkServes(h.open.port(), false);
    checkServes(h.keyed.port(), true);
    h.exported.checkConfined();
  }
  if (size == 0) return 0;
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string stream = (data[0] & 1) == 0 ? std::string(rest)
                                          : fuzz::framedStream(rest, rpc::FrameType::kCall,
                                                               [](size_t i) { return i + 1; });

  auto socket = connectOrFail(((data[0] & 2) != 0 ? h.keyed : h.open).port());
  (void)socket.sendRaw(stream);  // the server may close first: that is its right
  socket.shutdownWrite();
  if (!socket.waitClosed(8000ms)) {
    fuzz::fuzzFail("server kept a half-closed connection open for 8 s");
  }
  return 0;
}
