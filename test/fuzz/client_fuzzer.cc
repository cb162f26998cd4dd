// The client's reply parser: a real fops::Client on a real TCP transport,
// connected to a fake server (a loopback listener and a thread in this
// process) that reads the client's one call and answers it with fuzz bytes,
// then waits for the client to hang up. The call must end with a result or an
// error (never a crash, an overflow of the caller's buffers, or a hang), and a
// read's or write's byte count must fit the caller's iov. The HELLO
// operation runs the client's half of the handshake (rpc::authenticate).
//
// Input: byte 0 picks the operation, byte 1 holds flags, the rest is what the
// fake server sends.
//   flags & 1: the rest is records (framedStream) sent as Reply frames with
//              the call's xid; otherwise raw bytes, and
//   flags & 2: the raw bytes get the call's xid at offset 16 (the preamble's
//              xid), so a raw reply can match;
//   flags & 4: the client has an io-cache (regular reads fill it);
//   flags & 8: reads ask for 64 KiB, else 100 bytes;
//   flags & 16: the destination is three iovecs, else one;
//   flags & 32: HELLO with a shared key (then it must fail: fuzz bytes
//               cannot prove the key), else without one.
#include <fcntl.h>

#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "fops/client.h"
#include "rpc/auth_client.h"
#include "tcp/client_transport.h"
#include "test/fuzz/fuzz_support.h"

namespace {

using namespace zcio;
using namespace std::chrono_literals;

enum Op { kOpen, kStat, kFstat, kRead, kReadDirect, kWrite, kFsync, kClose, kHello, kOpCount };

struct Input {
  Op op = kOpen;
  uint8_t flags = 0;
  std::string_view stream;
};

std::string answerFor(const Input& in, uint64_t xid) {
  if ((in.flags & 1) != 0) {
    return fuzz::framedStream(in.stream, rpc::FrameType::kReply, [xid](size_t) { return xid; });
  }
  std::string raw(in.stream);
  if ((in.flags & 2) != 0 && raw.size() >= 24) {
    for (size_t i = 0; i < 8; ++i) raw[16 + i] = static_cast<char>((xid >> (8 * i)) & 0xff);
  }
  return raw;
}

// The fake server's side of one input.
void serveOne(test::LoopbackListener& from, const Input& in) {
  test::FrameSocket socket = from.accept(5000ms);
  if (!socket.valid()) fuzz::fuzzFail("the client did not connect within 5 s");
  // No call comes when the client fails it before sending: EOF then.
  if (auto call = socket.readFrame(5000ms)) {
    (void)socket.sendRaw(answerFor(in, call->preamble.xid));
  }
  socket.shutdownWrite();
  // The client hangs up when the test destroys it; until then its unread
  // bytes stay readable (closing first could reset them away).
  if (!socket.waitClosed(10000ms)) fuzz::fuzzFail("the client never hung up");
}

// Destination buffers allocated to their exact size: ASan reports a byte
// written past any of them.
struct Destination {
  std::vector<std::unique_ptr<char[]>> pieces;
  std::vector<iovec> iov;
  uint64_t length = 0;

  Destination(size_t total, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      size_t n = total / count + (i == 0 ? total % count : 0);
      pieces.push_back(std::make_unique<char[]>(n));
      iov.push_back(iovec{pieces.back().get(), n});
      length += n;
    }
  }
};

void runOp(fops::Client& client, const Input& in) {
  constexpr fops::FileHandle kFh = 1;
  Destination dst((in.flags & 8) != 0 ? 65536 : 100, (in.flags & 16) != 0 ? 3 : 1);
  switch (in.op) {
    case kOpen:
      (void)client.open("a", O_RDWR | O_CREAT, 0644);
      break;
    case kStat:
      (void)client.stat("a");
      break;
    case kFstat:
      (void)client.fstat(kFh);
      break;
    case kRead:
    case kReadDirect: {
      auto n =
          in.op == kRead ? client.preadv(kFh, dst.iov, 0) : client.preadvDirect(kFh, dst.iov, 0);
      if (n && *n > dst.length) {
        fuzz::fuzzFail("a read returned " + std::to_string(*n) + " bytes into an iov of " +
                       std::to_string(dst.length));
      }
      break;
    }
    case kWrite: {
      auto n = client.pwritev(kFh, dst.iov, 0);
      if (n && *n > dst.length) {
        fuzz::fuzzFail("a write reported " + std::to_string(*n) + " bytes written of " +
                       std::to_string(dst.length));
      }
      break;
    }
    case kFsync:
      (void)client.fsync(kFh);
      break;
    case kClose:
      (void)client.close(kFh);
      break;
    case kHello:
    case kOpCount:
      break;
  }
}

test::LoopbackListener& listener() {
  static test::LoopbackListener l;
  if (!l.valid()) fuzz::fuzzFail(l.error());
  return l;
}

}  // namespace

// One-time set-up outside any input (LeakSanitizer checks inputs): the
// listener, and OpenSSL's random state for HELLO's nonces.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  fuzz::quietLogs();
  (void)listener();
  if (!rpc::randomNonce()) fuzz::fuzzFail("no random nonce");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  Input in;
  in.op = static_cast<Op>(data[0] % kOpCount);
  in.flags = data[1];
  in.stream = std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::thread peer([&] { serveOne(listener(), in); });
  {
    tcp::ClientOptions transport_options;
    transport_options.table_capacity = 4;
    auto transport =
        tcp::TcpClientTransport::connect("127.0.0.1", listener().port(), transport_options);
    if (!transport) fuzz::fuzzFail("connect to the fake server: " + transport.error().toString());
    if (in.op == kHello) {
      auto key = rpc::SharedKey::fromBytes(std::string(fuzz::kFuzzKey));
      bool keyed = (in.flags & 32) != 0;
      auto r = rpc::authenticate(**transport, keyed ? &key : nullptr, 5000ms);
      if (r && keyed) fuzz::fuzzFail("HELLO accepted a server that never proved the key");
      (*transport)->shutdown();
      peer.join();
      return 0;
    }
    fops::ClientOptions options;
    options.timeout = 5000ms;  // never reached: the fake server always answers or closes
    options.sync_spin = 0us;
    options.io_cache_bytes = (in.flags & 4) != 0 ? 1 << 20 : 0;
    fops::Client client(std::move(*transport), options);
    runOp(client, in);
  }
  peer.join();
  return 0;
}
