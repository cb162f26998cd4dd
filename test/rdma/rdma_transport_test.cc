// RDMA-only behaviour, on a real verbs device (Soft-RoCE in soft-roce-ci's
// VM); without one every test is skipped with the reason.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <future>
#include <random>
#include <thread>

#include "fops/client.h"
#include "fops/url.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"
#include "verbs/client_transport.h"

namespace zcio::test {
namespace {

constexpr size_t kMiB = 1 << 20;

class RdmaTransport : public ::testing::Test {
 protected:
  void SetUp() override {
    if (transportUnderTest() != "rdma")
      GTEST_SKIP() << "needs ZCIO_TEST_TRANSPORT=rdma and an RDMA device";
    content_ = writeRandomFile(dir_.file("f.bin"), 8 * kMiB, 77);
    server_ = std::make_unique<ServerProcess>(dir_.path());
    auto client = fops::Client::connect(server_->url());
    ASSERT_TRUE(client) << client.error().toString();
    client_ = std::move(*client);
    ASSERT_NE(client_->describe().find("rdma"), std::string::npos) << client_->describe();
    auto fh = client_->open("f.bin", O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
    fh_ = *fh;
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->stop(), 0) << server_->log();
    }
  }

  TempDir dir_;
  std::string content_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<fops::Client> client_;
  fops::FileHandle fh_ = 0;
};

TEST_F(RdmaTransport, DirectReadRegistersTheCallersOwnPagesAndCopiesNothing) {
  // Three unaligned segments of the caller's memory per call: each becomes
  // a registration of the caller's pages (cached: the first call registers,
  // the others hit) and a write-chunk segment (a memory window of its own).
  ASSERT_NE(client_->describe().find("type-2 windows"), std::string::npos) << client_->describe();
  std::vector<char> buffer(kMiB + 64);
  for (int i = 0; i < 8; ++i) {
    iovec iov[3] = {{buffer.data() + 1, 4096 * 10 + 3},
                    {buffer.data() + 50000, 300000},
                    {buffer.data() + 400000, kMiB - 400000 - 64}};
    size_t want = iov[0].iov_len + iov[1].iov_len + iov[2].iov_len;
    auto n = client_->preadvDirect(fh_, iov, uint64_t{static_cast<unsigned>(i)} * kMiB);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, want);
    size_t at = static_cast<size_t>(i) * kMiB;
    for (const iovec& v : iov) {
      ASSERT_EQ(std::memcmp(v.iov_base, content_.data() + at, v.iov_len), 0) << "call " << i;
      at += v.iov_len;
    }
  }
  auto s = client_->stats();
  EXPECT_EQ(s.bytes_copied, 0u);
  EXPECT_EQ(s.registrations, 3u);
  EXPECT_EQ(s.registration_hits, 7u * 3);
}

TEST_F(RdmaTransport, HundredDirectReadsIntoOneBufferRegisterItOnce) {
  // Unpinned memory: the registration cache keeps the MR across calls (its
  // unmap monitor makes that sound), each call only binds a window.
  constexpr size_t kBlock = 256 * 1024;
  std::vector<char> buffer(kBlock);
  for (int i = 0; i < 100; ++i) {
    iovec iov{buffer.data(), buffer.size()};
    uint64_t offset =
        (uint64_t{static_cast<unsigned>(i)} * 7919 * 4096) % (content_.size() - kBlock);
    auto n = client_->preadvDirect(fh_, {&iov, 1}, offset);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, kBlock);
    ASSERT_EQ(std::memcmp(buffer.data(), content_.data() + offset, kBlock), 0) << "call " << i;
  }
  auto s = client_->stats();
  EXPECT_EQ(s.registrations, 1u);
  EXPECT_EQ(s.registration_hits, 99u);
  EXPECT_EQ(s.bytes_copied, 0u);
}

TEST_F(RdmaTransport, RemappedBufferIsNeverReadThroughAStaleRegistration) {
  // Invariant 2: unmap a cached buffer and map fresh memory at the same
  // address; the next call must register the new pages. A stale MR would
  // still point at the old pages, and the data would land there instead.
  constexpr size_t kSize = 256 * 1024;
  void* first = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(first, MAP_FAILED);
  iovec iov{first, kSize};
  auto n = client_->preadvDirect(fh_, {&iov, 1}, 0);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_EQ(std::memcmp(first, content_.data(), kSize), 0);
  ASSERT_EQ(munmap(first, kSize), 0);
  void* second = mmap(first, kSize, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (second == MAP_FAILED) GTEST_SKIP() << "the address was taken again before we could map it";
  ASSERT_EQ(second, first);
  n = client_->preadvDirect(fh_, {&iov, 1}, kMiB);
  ASSERT_TRUE(n) << n.error().toString();
  EXPECT_EQ(std::memcmp(second, content_.data() + kMiB, kSize), 0)
      << "the read went through the old mapping's registration";
  auto s = client_->stats();
  EXPECT_EQ(s.registrations, 2u);
  EXPECT_EQ(s.registration_hits, 0u);
  munmap(second, kSize);
}

TEST_F(RdmaTransport, PreRegisteredMemoryIsNeverRegisteredAgain) {
  size_t size = 4 * kMiB;
  void* memory = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  ASSERT_TRUE(client_->registerMemory(memory, size));
  std::mt19937 rng(5);
  for (int i = 0; i < 100; ++i) {
    size_t length = 1 + rng() % kMiB;
    size_t at = rng() % (size - length);
    uint64_t offset = rng() % (content_.size() - length);
    iovec iov{static_cast<char*>(memory) + at, length};
    auto n = client_->preadvDirect(fh_, {&iov, 1}, offset);
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_EQ(*n, length);
    ASSERT_EQ(std::memcmp(iov.iov_base, content_.data() + offset, length), 0) << "call " << i;
  }
  auto s = client_->stats();
  EXPECT_EQ(s.registrations, 0u);
  EXPECT_EQ(s.registration_hits, 100u);
  EXPECT_EQ(s.bytes_copied, 0u);
  EXPECT_TRUE(client_->deregisterMemory(memory, size));
  // Gone from the cache: the next call registers for itself.
  iovec iov{memory, 4096};
  ASSERT_TRUE(client_->preadvDirect(fh_, {&iov, 1}, 0));
  EXPECT_EQ(client_->stats().registrations, 1u);
  munmap(memory, size);
}

TEST_F(RdmaTransport, SegmentsTooSmallForTheReadGetAnErrorReply) {
  // A call whose write chunks hold less than it asks for (as a buggy or
  // hostile client would send) is answered with EINVAL, not a crash.
  auto url = fops::parseUrl(server_->url());
  ASSERT_TRUE(url);
  auto transport = verbs::VerbsClientTransport::connect(url->host, url->port);
  ASSERT_TRUE(transport) << transport.error().toString();
  std::vector<char> small(4096);
  auto call = std::make_shared<rpc::Call>();
  call->header.set_op(rpc::pb::OP_READ);
  call->header.set_fh(1);  // not opened on this connection: the chunk check comes first
  call->header.set_length(kMiB);
  call->direct = true;
  call->destination = {{small.data(), small.size()}};
  std::promise<Result<rpc::ReplyData>> done;
  call->done = [&](Result<rpc::ReplyData> r) { done.set_value(std::move(r)); };
  (*transport)->submit(call);
  auto reply = done.get_future().get();
  ASSERT_TRUE(reply) << reply.error().toString();
  EXPECT_EQ(reply->header.error(), EINVAL) << reply->header.message();
  EXPECT_NE(reply->header.message().find("write chunks"), std::string::npos)
      << reply->header.message();
  // The server carries on with this client.
  std::vector<char> buffer(kMiB);
  iovec iov{buffer.data(), buffer.size()};
  auto n = client_->preadvDirect(fh_, {&iov, 1}, 0);
  ASSERT_TRUE(n) << n.error().toString();
  EXPECT_EQ(std::memcmp(buffer.data(), content_.data(), kMiB), 0);
}

TEST_F(RdmaTransport, CancelOnPreRegisteredMemoryLeavesItUntouchedWithoutClosingTheConnection) {
  // Pre-registered memory stays registered after the call, but the call only
  // exposed it through a window, which the cancel invalidates before it
  // returns: the client need not close the connection. The server's late
  // RDMA WRITE then fails (on rxe that error ends the connection from the
  // responder's side), and nothing lands.
  size_t size = 2 * kMiB;
  void* memory = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(memory, MAP_FAILED);
  ASSERT_TRUE(client_->registerMemory(memory, size));
  ASSERT_EQ(kill(server_->pid(), SIGSTOP), 0);
  std::memset(memory, 0x5a, size);
  iovec iov{memory, size};
  std::promise<Result<size_t>> done;
  auto call = client_->preadvAsync(fh_, {&iov, 1}, 0, fops::IoMode::kDirect,
                                   [&](Result<size_t> r) { done.set_value(std::move(r)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  client_->cancel(call);
  auto r = done.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ECANCELED) << r.error().toString();
  EXPECT_EQ(r.error().what.find("connection closed"), std::string::npos) << r.error().toString();
  ASSERT_EQ(kill(server_->pid(), SIGCONT), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const auto* bytes = static_cast<const unsigned char*>(memory);
  for (size_t i = 0; i < size; ++i)
    ASSERT_EQ(bytes[i], 0x5a) << "byte " << i << " written after cancel";
  (void)client_->deregisterMemory(memory, size);
  munmap(memory, size);
}

TEST(RdmaAddress, AnIpv6UrlWorksLikeTcp) {
  // rdma://[v6]:port: the server listens and the client connects through
  // rdma_getaddrinfo, as tcp:// does through getaddrinfo.
  if (transportUnderTest() != "rdma")
    GTEST_SKIP() << "needs ZCIO_TEST_TRANSPORT=rdma and an RDMA device";
  const char* v6 = std::getenv("ZCIO_RXE_ADDR6");
  if (v6 == nullptr || *v6 == '\0')
    GTEST_SKIP() << "no IPv6 address on the RDMA device's netdev (ZCIO_RXE_ADDR6, which "
                    "soft-roce-ci's guest sets)";
  TempDir dir;
  std::string content = writeRandomFile(dir.file("f.bin"), kMiB, 6);
  ServerProcessOptions options;
  options.rdma_host = v6;
  ServerProcess server(dir.path(), {}, options);
  EXPECT_NE(server.url().find(std::string("rdma://[") + v6 + "]:"), std::string::npos)
      << server.url();
  auto client = fops::Client::connect(server.url());
  ASSERT_TRUE(client) << client.error().toString();
  EXPECT_NE((*client)->describe().find(std::string("[") + v6 + "]:"), std::string::npos)
      << (*client)->describe();
  auto fh = (*client)->open("f.bin", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();
  std::vector<char> buffer(256 * 1024);
  iovec iov{buffer.data(), buffer.size()};
  auto n = (*client)->preadvDirect(*fh, {&iov, 1}, 4096);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_EQ(*n, buffer.size());
  EXPECT_EQ(std::memcmp(buffer.data(), content.data() + 4096, buffer.size()), 0);
  client->reset();
  EXPECT_EQ(server.stop(), 0) << server.log();
}

}  // namespace
}  // namespace zcio::test
