// The RDMA server's connection caps, allow-list and idle timeout, on a real
// verbs device (Soft-RoCE in soft-roce-ci's VM): a refused client hears the
// server's reason (rdma_reject private data) as ECONNREFUSED.
#include <gtest/gtest.h>

#include <thread>

#include "fops/client.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

using namespace std::chrono_literals;

class RdmaServerLimits : public ::testing::Test {
 protected:
  void SetUp() override {
    if (transportUnderTest() != "rdma")
      GTEST_SKIP() << "needs ZCIO_TEST_TRANSPORT=rdma and an RDMA device";
    writeRandomFile(dir_.file("f.bin"), 4096, 5);
  }
  TempDir dir_;
};

TEST_F(RdmaServerLimits, PerClientCapRejectsWithTheReason) {
  ServerProcess server(dir_.path(), {"--max-connections-per-client", "1"});
  auto first = fops::Client::connect(server.url());
  ASSERT_TRUE(first) << first.error().toString();
  ASSERT_TRUE((*first)->stat("f.bin"));
  auto second = fops::Client::connect(server.url());
  ASSERT_FALSE(second) << "a second connection from one address passed a cap of 1";
  EXPECT_EQ(second.error().code, ECONNREFUSED) << second.error().toString();
  EXPECT_NE(second.error().what.find("connection refused by server: too many connections"),
            std::string::npos)
      << second.error().toString();
  first->reset();  // its place comes back
  auto third = fops::Client::connect(server.url());
  ASSERT_TRUE(third) << third.error().toString() << server.log();
  EXPECT_TRUE((*third)->stat("f.bin"));
  third->reset();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(RdmaServerLimits, AllowListRejectsOtherAddresses) {
  ServerProcess server(dir_.path(), {"--allow", "192.0.2.0/24"});  // not the rxe address
  auto client = fops::Client::connect(server.url());
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, ECONNREFUSED) << client.error().toString();
  EXPECT_NE(client.error().what.find("connection refused by server: address not allowed"),
            std::string::npos)
      << client.error().toString();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(RdmaServerLimits, IdleConnectionIsClosed) {
  ServerProcess server(dir_.path(), {"--idle-timeout-ms", "1500"});
  fops::ClientOptions options;
  options.timeout = 5000ms;
  auto client = fops::Client::connect(server.url(), options);
  ASSERT_TRUE(client) << client.error().toString();
  ASSERT_TRUE((*client)->stat("f.bin"));
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (server.log().find("idle for 1500 ms") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(server.log().find("idle for 1500 ms"), std::string::npos) << server.log();
  EXPECT_FALSE((*client)->stat("f.bin")) << "a call on a closed idle connection succeeded";
  client->reset();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace zcio::test
