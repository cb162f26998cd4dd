// Issue 12, acceptance 1: one process, two rdma:// connections on the same
// device share one registration cache. A page can be watched by one
// userfaultfd only, so with a cache per connection the second connection
// could not cache what the first had cached, and registered its memory on
// every call. Counted with the connections' own counters (stats()).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "fops/brick.h"
#include "fops/client.h"
#include "fops/url.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"
#include "verbs/client_transport.h"
#include "verbs/device_context.h"
#include "verbs/server.h"

namespace zcio::test {
namespace {

constexpr size_t kMiB = 1 << 20;
constexpr size_t kBlock = 256 * 1024;
constexpr int kBuffers = 3;
constexpr int kRounds = 10;

struct Connection {
  std::unique_ptr<fops::Client> client;
  fops::FileHandle fh = 0;
};

class SharedDeviceContext : public ::testing::Test {
 protected:
  void SetUp() override {
    if (transportUnderTest() != "rdma")
      GTEST_SKIP() << "needs ZCIO_TEST_TRANSPORT=rdma and an RDMA device";
    content_ = writeRandomFile(dir_.file("f.bin"), 4 * kMiB, 12);
    for (auto& b : buffers_) b.assign(kBlock, 0);
  }
  void TearDown() override {
    for (auto& s : servers_) EXPECT_EQ(s->stop(), 0) << s->log();
  }

  Connection connect(const ServerProcess& server) {
    Connection c;
    auto client = fops::Client::connect(server.url());
    EXPECT_TRUE(client) << client.error().toString();
    if (!client) return c;
    c.client = std::move(*client);
    // Only the window path caches user memory across calls.
    EXPECT_NE(c.client->describe().find("type-2 windows over cached registrations"),
              std::string::npos)
        << c.client->describe();
    auto fh = c.client->open("f.bin", O_RDONLY);
    EXPECT_TRUE(fh) << fh.error().toString();
    if (fh) c.fh = *fh;
    return c;
  }

  // One direct read into each buffer, checked.
  void readAll(Connection& c, int round) {
    for (int b = 0; b < kBuffers; ++b) {
      uint64_t offset = (uint64_t{static_cast<unsigned>(round * kBuffers + b)} * 3 * 4096) %
                        (content_.size() - kBlock);
      iovec iov{buffers_[b].data(), kBlock};
      auto n = c.client->preadvDirect(c.fh, {&iov, 1}, offset);
      ASSERT_TRUE(n) << n.error().toString();
      ASSERT_EQ(*n, kBlock);
      ASSERT_EQ(std::memcmp(buffers_[b].data(), content_.data() + offset, kBlock), 0)
          << "round " << round << " buffer " << b;
    }
  }

  TempDir dir_;
  std::string content_;
  std::vector<std::unique_ptr<ServerProcess>> servers_;
  std::vector<char> buffers_[kBuffers];
};

TEST_F(SharedDeviceContext, TwoServersReadingTheSameBuffersRegisterThemOnlyOnce) {
  servers_.push_back(std::make_unique<ServerProcess>(dir_.path()));
  servers_.push_back(std::make_unique<ServerProcess>(dir_.path()));
  Connection a = connect(*servers_[0]);
  Connection b = connect(*servers_[1]);
  ASSERT_TRUE(a.client && b.client);
  for (int round = 0; round < kRounds; ++round) {
    ASSERT_NO_FATAL_FAILURE(readAll(a, round));
    ASSERT_NO_FATAL_FAILURE(readAll(b, round));
  }
  auto sa = a.client->stats();
  auto sb = b.client->stats();
  // The first read of each buffer (on a) registers it; every later one, on
  // either connection, hits. A cache per connection gives b a registration
  // per call instead (kRounds * kBuffers) and no hits.
  EXPECT_EQ(sa.registrations, uint64_t{kBuffers});
  EXPECT_EQ(sa.registration_hits, uint64_t{(kRounds - 1) * kBuffers});
  EXPECT_EQ(sb.registrations, 0u) << "the second connection registered the same buffers again";
  EXPECT_EQ(sb.registration_hits, uint64_t{kRounds * kBuffers});
  EXPECT_EQ(sa.bytes_copied + sb.bytes_copied, 0u);

  // The registrations belong to the device, not to the connection that made
  // them: with a gone, b still hits.
  a.client.reset();
  for (int round = 0; round < 3; ++round) ASSERT_NO_FATAL_FAILURE(readAll(b, round));
  sb = b.client->stats();
  EXPECT_EQ(sb.registrations, 0u);
  EXPECT_EQ(sb.registration_hits, uint64_t{(kRounds + 3) * kBuffers});
}

TEST_F(SharedDeviceContext, TheSameServerTwiceSharesRegistrationsEitherWay) {
  servers_.push_back(std::make_unique<ServerProcess>(dir_.path()));
  Connection a = connect(*servers_[0]);
  Connection b = connect(*servers_[0]);
  ASSERT_TRUE(a.client && b.client);
  // b goes first this time, then they alternate call by call.
  ASSERT_NO_FATAL_FAILURE(readAll(b, 0));
  for (int round = 1; round < kRounds; ++round) {
    ASSERT_NO_FATAL_FAILURE(readAll(a, round));
    ASSERT_NO_FATAL_FAILURE(readAll(b, round));
  }
  auto sa = a.client->stats();
  auto sb = b.client->stats();
  EXPECT_EQ(sb.registrations, uint64_t{kBuffers});
  EXPECT_EQ(sa.registrations, 0u) << "the second connection registered the same buffers again";
  EXPECT_EQ(sa.registration_hits, uint64_t{(kRounds - 1) * kBuffers});
  EXPECT_EQ(sb.registration_hits, uint64_t{(kRounds - 1) * kBuffers});
}

TEST_F(SharedDeviceContext, OneContextPerDeviceForServerAndClientsUntilTheLastGoes) {
  // A server in this process and two clients of it: one context, one PD.
  ASSERT_EQ(verbs::DeviceContext::liveCount(), 0u);
  auto brick = fops::Brick::create(dir_.path());
  ASSERT_TRUE(brick) << brick.error().toString();
  verbs::VerbsServerOptions options;
  options.host = rdmaAddress();
  auto server = verbs::VerbsServer::start(options, **brick);
  ASSERT_TRUE(server) << server.error().toString();
  EXPECT_EQ(verbs::DeviceContext::liveCount(), 1u);
  auto a = verbs::VerbsClientTransport::connect(rdmaAddress(), (*server)->port());
  ASSERT_TRUE(a) << a.error().toString();
  auto b = verbs::VerbsClientTransport::connect(rdmaAddress(), (*server)->port());
  ASSERT_TRUE(b) << b.error().toString();
  EXPECT_EQ(verbs::DeviceContext::liveCount(), 1u);
  EXPECT_EQ((*a)->device(), (*b)->device());
  EXPECT_EQ((*a)->payloadPool(), (*b)->payloadPool());
  EXPECT_EQ(&(*a)->registrationCache(), &(*b)->registrationCache());
  a->reset();
  EXPECT_EQ(verbs::DeviceContext::liveCount(), 1u);
  (*server)->stop();
  server->reset();
  EXPECT_EQ(verbs::DeviceContext::liveCount(), 1u);  // b still holds it
  b->reset();
  EXPECT_EQ(verbs::DeviceContext::liveCount(), 0u);
}

TEST_F(SharedDeviceContext, TwoServersOnOneDeviceShareTheServicesPoolRegistration) {
  // zcio-server with two rdma:// listeners: one service, one pool, two
  // servers. The pool is registered once on the device; the first server to
  // stop must not take the registration from under the other.
  fops::BrickOptions brick_options;
  brick_options.pool = iobuf::BufferPool::create();
  auto brick = fops::Brick::create(dir_.path(), brick_options);
  ASSERT_TRUE(brick) << brick.error().toString();
  std::unique_ptr<verbs::VerbsServer> servers[2];
  for (auto& server : servers) {
    verbs::VerbsServerOptions options;
    options.host = rdmaAddress();
    options.pool = brick_options.pool;
    auto started = verbs::VerbsServer::start(options, **brick);
    ASSERT_TRUE(started) << started.error().toString();
    server = std::move(*started);
  }
  Connection c[2];
  for (int i = 0; i < 2; ++i) {
    auto client =
        fops::Client::connect("rdma://" + rdmaAddress() + ":" + std::to_string(servers[i]->port()));
    ASSERT_TRUE(client) << client.error().toString();
    c[i].client = std::move(*client);
    auto fh = c[i].client->open("f.bin", O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
    c[i].fh = *fh;
    ASSERT_NO_FATAL_FAILURE(readAll(c[i], i));
  }
  c[0].client.reset();
  servers[0]->stop();
  servers[0].reset();
  // Regular reads too: their payload leaves the server from the pool.
  ASSERT_NO_FATAL_FAILURE(readAll(c[1], 2));
  std::vector<char> regular(kBlock);
  iovec iov{regular.data(), regular.size()};
  auto n = c[1].client->preadv(c[1].fh, {&iov, 1}, 8192);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_EQ(*n, kBlock);
  EXPECT_EQ(std::memcmp(regular.data(), content_.data() + 8192, kBlock), 0);
}

}  // namespace
}  // namespace zcio::test
