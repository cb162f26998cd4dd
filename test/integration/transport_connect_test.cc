// transport::connectTransport, the one place a URL scheme becomes a
// transport: tcp:// gives the TCP transport (in every build), and bad
// schemes or options are refused before anything connects.
#include <gtest/gtest.h>

#include <cerrno>

#include "fops/client.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"
#include "transport/connect.h"

namespace zcio::test {
namespace {

TEST(TransportConnect, TcpSchemePicksTheTcpTransport) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto transport = transport::connectTransport("tcp", "127.0.0.1", server.port());
  ASSERT_TRUE(transport) << transport.error().toString();
  EXPECT_EQ((*transport)->describe().rfind("tcp ", 0), 0u) << (*transport)->describe();
  EXPECT_TRUE((*transport)->registerMemory(nullptr, 0));  // TCP needs no registration
  (*transport)->shutdown();

  // The client goes through the same factory.
  auto client = fops::Client::connect(server.tcpUrl());
  ASSERT_TRUE(client) << client.error().toString();
  EXPECT_EQ((*client)->describe().rfind("tcp ", 0), 0u) << (*client)->describe();
  auto st = (*client)->stat(".");
  EXPECT_TRUE(st) << st.error().toString();
  (*client)->shutdown();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(TransportConnect, UnknownSchemeIsRefused) {
  auto transport = transport::connectTransport("udp", "127.0.0.1", 1);
  ASSERT_FALSE(transport);
  EXPECT_EQ(transport.error().code, EPROTONOSUPPORT) << transport.error().toString();
}

TEST(TransportConnect, ZeroMaxInFlightIsRefusedForEveryScheme) {
  transport::TransportOptions options;
  options.max_in_flight = 0;
  for (const char* scheme : {"tcp", "rdma", "auto"}) {
    auto transport = transport::connectTransport(scheme, "127.0.0.1", 1, options);
    ASSERT_FALSE(transport) << scheme;
    EXPECT_EQ(transport.error().code, EINVAL) << scheme << ": " << transport.error().toString();
  }
}

TEST(TransportConnect, TcpConnectRefusalIsReported) {
  // Port 1 on loopback: nothing listens, the connect is refused at once.
  transport::TransportOptions options;
  options.connect_timeout = std::chrono::milliseconds(2000);
  auto transport = transport::connectTransport("tcp", "127.0.0.1", 1, options);
  ASSERT_FALSE(transport);
  EXPECT_EQ(transport.error().code, ECONNREFUSED) << transport.error().toString();
}

}  // namespace
}  // namespace zcio::test
