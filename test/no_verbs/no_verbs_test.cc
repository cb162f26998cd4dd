// Built only with ZCIO_WITH_VERBS=OFF: rdma:// fails with a clear error at
// every entry point (the factory, the C++ and C clients, zcio-server), and
// auto:// uses TCP.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <cerrno>
#include <cstdio>
#include <string>

#include "fops/client.h"
#include "fops/zcio.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"
#include "transport/connect.h"

namespace zcio::test {
namespace {

constexpr const char* kWhat = "zcio was built without RDMA (ZCIO_WITH_VERBS=OFF)";

TEST(NoVerbs, RdmaIsNotBuiltIn) {
  EXPECT_FALSE(transport::rdmaBuiltIn());
}

TEST(NoVerbs, RdmaSchemeFailsWithEprotonosupport) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto transport = transport::connectTransport("rdma", "127.0.0.1", server.port());
  ASSERT_FALSE(transport);
  EXPECT_EQ(transport.error().code, EPROTONOSUPPORT);
  EXPECT_EQ(transport.error().what, kWhat);

  auto client = fops::Client::connect("rdma://127.0.0.1:" + std::to_string(server.port()));
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().code, EPROTONOSUPPORT);
  EXPECT_EQ(client.error().what, kWhat);

  errno = 0;
  std::string url = "rdma://127.0.0.1:" + std::to_string(server.port());
  zcio_client_t* c = zcio_connect(url.c_str());
  EXPECT_EQ(c, nullptr);
  EXPECT_EQ(errno, EPROTONOSUPPORT);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(NoVerbs, AutoSchemeUsesTcp) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto client = fops::Client::connect("auto://127.0.0.1:" + std::to_string(server.port()));
  ASSERT_TRUE(client) << client.error().toString();
  EXPECT_EQ((*client)->describe().rfind("tcp ", 0), 0u) << (*client)->describe();
  auto st = (*client)->stat(".");
  EXPECT_TRUE(st) << st.error().toString();
  (*client)->shutdown();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST(NoVerbs, ServerRefusesAnRdmaListener) {
  TempDir dir;
  std::string command = std::string(ZCIO_SERVER_BINARY) + " --auth none --export " + dir.path() +
                        " --listen tcp://127.0.0.1:0 --listen rdma://127.0.0.1:0 2>&1";
  FILE* out = ::popen(command.c_str(), "r");
  ASSERT_NE(out, nullptr);
  std::string text;
  char buffer[512];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, out)) text.append(buffer, n);
  int status = ::pclose(out);
  ASSERT_TRUE(WIFEXITED(status)) << text;
  EXPECT_EQ(WEXITSTATUS(status), 2) << text;
  EXPECT_NE(text.find(kWhat), std::string::npos) << text;
  EXPECT_EQ(text.find("listening on"), std::string::npos) << text;
}

}  // namespace
}  // namespace zcio::test
