// A peer that stops in the middle of a frame is cut off after the server's
// --frame-stall-ms, and other clients are not affected.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "fops/client.h"
#include "rpc/frame.h"
#include "test/support/scripted_peer.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

using namespace std::chrono_literals;

TEST(FrameStall, PeerStoppingMidFrameIsClosedAfterTheStallTimeout) {
  TempDir dir;
  writeRandomFile(dir.file("f.bin"), 4096, 1);
  ServerProcess server(dir.path(), {"--frame-stall-ms", "300"});
  auto sock = FrameSocket::connectTo(server.port());
  ASSERT_TRUE(sock.valid());
  rpc::pb::Call call;
  call.set_op(rpc::pb::OP_WRITE);
  call.set_fh(1);
  call.set_length(1 << 20);
  std::string header = call.SerializeAsString();
  rpc::Preamble p;
  p.header_length = static_cast<uint32_t>(header.size());
  p.payload_length = 1 << 20;
  p.xid = 1;
  ASSERT_TRUE(sock.sendPreamble(p));
  ASSERT_TRUE(sock.sendRaw(header));
  ASSERT_TRUE(sock.sendRaw(std::string(1000, 'x')));  // then nothing more
  // The server closes: our read sees EOF well before its own 5 s deadline.
  char byte;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(sock.readExact(&byte, 1, 5000ms));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  EXPECT_NE(server.log().find("stalled"), std::string::npos) << server.log();

  auto client = fops::Client::connect(server.url());
  ASSERT_TRUE(client) << client.error().toString();
  EXPECT_TRUE((*client)->stat("f.bin"));
  EXPECT_EQ(server.stop(), 0);
}

TEST(FrameStall, IdleConnectionsBetweenFramesAreKept) {
  TempDir dir;
  writeRandomFile(dir.file("f.bin"), 4096, 2);
  ServerProcess server(dir.path(), {"--frame-stall-ms", "200"});
  auto client = fops::Client::connect(server.url());
  ASSERT_TRUE(client) << client.error().toString();
  ASSERT_TRUE((*client)->stat("f.bin"));
  std::this_thread::sleep_for(600ms);  // idle, not mid-frame
  auto st = (*client)->stat("f.bin");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, 4096u);
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace zcio::test
