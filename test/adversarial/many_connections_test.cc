// Many connections at once: clients that send garbage, stall mid-frame, or
// pipeline reads without ever reading the replies must not disturb a
// well-behaved client's concurrent transfers on the same server (and, with
// one server thread, on the same io thread).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "fops/client.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/scripted_peer.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

namespace pb = rpc::pb;

std::string callPreamble(uint32_t header_length, uint64_t payload_length, uint64_t xid = 1) {
  return rawPreamble(rpc::kMagic, rpc::kVersion, 1, 0, header_length, 0, xid, payload_length);
}

// One attack per connection, cycled; each connection is closed by the server
// (protocol error) or by us (truncation).
std::string attackBytes(int i) {
  switch (i % 6) {
    case 0:
      return patternBytes(500, static_cast<uint64_t>(i));
    case 1:
      return rawPreamble(rpc::kMagic, 7, 1, 0, 0, 0, 1, 0);
    case 2:
      return callPreamble(rpc::kMaxHeaderLength + 1, 0);
    case 3:
      return callPreamble(0, rpc::kMaxPayloadLength + 1);
    case 4:
      return callPreamble(8, 0) + std::string(8, '\xff');
    default: {
      pb::Call call;
      call.set_op(pb::OP_READ);
      std::string h = call.SerializeAsString();
      return callPreamble(static_cast<uint32_t>(h.size()) + 50, 0) + h;  // truncated
    }
  }
}

void runTransfersUnderAttack(unsigned server_threads) {
  constexpr size_t kFileSize = 8 * 1024 * 1024;
  constexpr size_t kChunk = 1024 * 1024;
  TempDir dir;
  const std::string data = writeRandomFile(dir.file("big.bin"), kFileSize, 9);
  ServerProcess server(dir.path(), {"--threads", std::to_string(server_threads)});

  // Connections that stay open and misbehave for the whole test.
  // 1) a partial preamble, then silence (slowloris);
  auto stalled_preamble = FrameSocket::connectTo(server.port());
  ASSERT_TRUE(stalled_preamble.sendRaw(callPreamble(0, 0).substr(0, 11)));
  // 2) a WRITE announcing 1 MiB that sends a third of it, then silence;
  auto stalled_payload = FrameSocket::connectTo(server.port());
  {
    pb::Call call;
    call.set_op(pb::OP_WRITE);
    call.set_fh(1);
    call.set_length(kChunk);
    std::string h = call.SerializeAsString();
    ASSERT_TRUE(stalled_payload.sendRaw(callPreamble(static_cast<uint32_t>(h.size()), kChunk) + h +
                                        patternBytes(kChunk / 3, 1)));
  }
  // 3) a client that pipelines 1 MiB reads and never reads the replies.
  auto never_reads = FrameSocket::connectTo(server.port());
  {
    pb::Call open;
    open.set_op(pb::OP_OPEN);
    open.set_path("big.bin");
    open.set_flags(pb::OPEN_READ);
    ASSERT_TRUE(never_reads.sendCall(1, open));
    std::string burst;
    for (uint64_t i = 0; i < 24; ++i) {
      pb::Call read;
      read.set_op(pb::OP_READ);
      read.set_fh(1);
      read.set_offset((i % 8) * kChunk);
      read.set_length(kChunk);
      std::string h = read.SerializeAsString();
      burst += callPreamble(static_cast<uint32_t>(h.size()), 0, i + 2) + h;
    }
    ASSERT_TRUE(never_reads.sendRaw(burst));
  }

  // Attackers on fresh connections, concurrently with the transfers.
  std::atomic<bool> transfers_done{false};
  std::atomic<int> attacks{0};
  std::atomic<int> not_closed{0};
  std::thread attacker([&] {
    for (int i = 0; !transfers_done.load() || i < 30; ++i) {
      auto s = FrameSocket::connectTo(server.port());
      if (!s.valid()) {
        ++not_closed;
        continue;
      }
      s.sendRaw(attackBytes(i));
      if (i % 6 == 5) {
        s.close();  // truncated frame, then close
      } else if (!s.waitClosed(3000ms)) {
        ++not_closed;
      }
      ++attacks;
      if (i > 2000) break;
    }
  });

  // The well-behaved client: direct and regular reads, direct writes, all
  // verified, over several rounds while the attacks go on.
  {
    fops::ClientOptions options;
    options.timeout = 20000ms;
    auto client = fops::Client::connect(server.url(), options);
    ASSERT_TRUE(client) << client.error().toString();
    auto fh = (*client)->open("big.bin", O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
    auto out = (*client)->open("out.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_TRUE(out) << out.error().toString();
    std::string buf(kChunk, '\0');
    for (int round = 0; round < 3; ++round) {
      for (size_t off = 0; off < kFileSize; off += kChunk) {
        iovec iov{buf.data(), buf.size()};
        auto n = (off / kChunk + static_cast<size_t>(round)) % 2 == 0
                     ? (*client)->preadvDirect(*fh, std::span<const iovec>(&iov, 1), off)
                     : (*client)->preadv(*fh, std::span<const iovec>(&iov, 1), off);
        ASSERT_TRUE(n) << n.error().toString();
        ASSERT_EQ(*n, kChunk);
        ASSERT_TRUE(std::string_view(buf) == std::string_view(data).substr(off, kChunk))
            << "round " << round << " offset " << off << ": wrong data";
        auto w = (*client)->pwritevDirect(*out, std::span<const iovec>(&iov, 1), off);
        ASSERT_TRUE(w) << w.error().toString();
        ASSERT_EQ(*w, kChunk);
      }
      std::string back(kFileSize, '\0');
      iovec iov{back.data(), back.size()};
      auto n = (*client)->preadvDirect(*out, std::span<const iovec>(&iov, 1), 0);
      ASSERT_TRUE(n) << n.error().toString();
      ASSERT_TRUE(back == data) << "round " << round << ": written data reads back wrong";
    }
    EXPECT_EQ((*client)->stats().protocol_errors, 0u);
  }
  transfers_done = true;
  attacker.join();
  EXPECT_GE(attacks.load(), 30);
  EXPECT_EQ(not_closed.load(), 0) << "server left attacking connections open";
  EXPECT_TRUE(readLocalFile(dir.file("out.bin")) == data);
  EXPECT_TRUE(readLocalFile(dir.file("big.bin")) == data);
  // The server logged the protocol errors and is still up.
  EXPECT_NE(server.log().find("protocol error"), std::string::npos);
  ASSERT_TRUE(server.alive()) << server.log();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(ManyConnections, AttackersDoNotDisturbATransferOnOneServerThread) {
  runTransfersUnderAttack(1);
}

TEST(ManyConnections, AttackersDoNotDisturbATransferOnTwoServerThreads) {
  runTransfersUnderAttack(2);
}

}  // namespace
}  // namespace zcio::test
