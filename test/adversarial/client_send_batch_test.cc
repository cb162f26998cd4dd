// The TCP client gathers queued calls into one write (a batch). When the
// write ends, every call in that batch is marked sent; a call whose reply
// came first (parked) completes then, and its completion may submit the next
// call at once. That submit starts the next write while the finished batch is
// still being walked: the walk must still mark every call of *its* batch as
// sent, or their replies stay parked until the call times out.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fops/client.h"
#include "tcp/client_transport.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/scripted_peer.h"

namespace zcio::test {
namespace {

namespace pb = rpc::pb;
using fops::IoMode;

constexpr fops::FileHandle kFh = 7;              // the scripted peer accepts any handle
constexpr size_t kWriteSize = 24 * 1024 * 1024;  // far more than socket buffers hold
constexpr size_t kReadSize = 4096;

std::unique_ptr<fops::Client> connectClient(const ScriptedPeer& peer,
                                            std::chrono::milliseconds timeout) {
  auto transport = tcp::TcpClientTransport::connect("127.0.0.1", peer.port());
  EXPECT_TRUE(transport) << transport.error().toString();
  if (!transport) return nullptr;
  fops::ClientOptions options;
  options.timeout = timeout;
  return std::make_unique<fops::Client>(std::move(*transport), options);
}

// Reads the preamble and header of the next call (not its payload).
std::optional<rpc::Preamble> readCallHead(FrameSocket& c) {
  rpc::PreambleBytes pre{};
  if (!c.readExact(pre.data(), pre.size())) return std::nullopt;
  auto p = rpc::decodePreamble(pre);
  if (!p) return std::nullopt;
  std::string header(p->header_length, '\0');
  if (!c.readExact(header.data(), header.size())) return std::nullopt;
  return *p;
}

pb::Reply writeReply(size_t count) {
  pb::Reply reply;
  reply.set_count(count);
  return reply;
}

struct Read {
  uint64_t offset;
  CanaryBuffer buffer{kReadSize};
  std::shared_ptr<AsyncResult> result = std::make_shared<AsyncResult>();
};

void startRead(fops::Client& client, Read& read) {
  auto cb = read.result->callback();
  client.preadvAsync(kFh, read.buffer.iov(), read.offset, IoMode::kDirect,
                     [cb](Result<size_t> r) { cb(std::move(r)); });
}

void startWrite(fops::Client& client, std::string& data, std::shared_ptr<AsyncResult> result,
                std::function<void()> at_completion = {}) {
  iovec iov{data.data(), data.size()};
  auto cb = result->callback(std::move(at_completion));
  client.pwritevAsync(kFh, std::span<const iovec>(&iov, 1), 0, IoMode::kDirect,
                      [cb](Result<size_t> r) { cb(std::move(r)); });
}

// Batch [write A, read B, read C]: A is answered early (its reply is parked
// until the batch's write ends), and A's completion submits read D while
// reads E and F wait in the send queue. B and C must still complete as soon
// as they are answered, not time out.
TEST(ClientSendBatch, CallsOfAWriteStayTrackedWhenACompletionStartsTheNextWrite) {
  Signal queued, a_answered, go;
  // Declared before the client: its shutdown may still complete calls.
  std::string w0_data(kWriteSize, 'w');
  std::string a_data(kWriteSize, 'a');
  auto w0 = std::make_shared<AsyncResult>();
  auto a = std::make_shared<AsyncResult>();
  std::map<char, Read> reads;
  for (char name : {'B', 'C', 'D', 'E', 'F'}) {
    reads[name].offset = static_cast<uint64_t>(name) * kReadSize;
  }
  ScriptedPeer peer([&](FrameSocket& c, int) {
    // W0: keeps the socket busy so A, B and C queue up into one batch.
    auto w0 = readCallHead(c);
    ASSERT_TRUE(w0);
    ASSERT_TRUE(queued.wait(5000ms));
    std::this_thread::sleep_for(100ms);  // let the client queue A, B, C
    std::string payload(w0->payload_length, '\0');
    ASSERT_TRUE(c.readExact(payload.data(), payload.size(), 10000ms));
    ASSERT_TRUE(c.sendReply(w0->xid, writeReply(kWriteSize)));
    // A: answered before its payload is read, so its reply is parked.
    auto a = readCallHead(c);
    ASSERT_TRUE(a);
    ASSERT_EQ(a->payload_length, kWriteSize);
    ASSERT_TRUE(c.sendReply(a->xid, writeReply(kWriteSize)));
    a_answered.notify();
    ASSERT_TRUE(go.wait(5000ms));
    std::this_thread::sleep_for(300ms);  // the client reads and parks A's reply
    payload.assign(kWriteSize, '\0');
    ASSERT_TRUE(c.readExact(payload.data(), payload.size(), 10000ms));
    // B, C, then D, E, F in whatever order they come: answer each at once.
    for (int i = 0; i < 5; ++i) {
      auto call = c.readCall(5000ms);
      ASSERT_TRUE(call) << "call " << i << " never arrived";
      uint64_t length = call->call.length();
      ASSERT_TRUE(c.sendReply(call->xid, readReplyHeader(length),
                              patternBytes(length, call->call.offset())));
    }
    c.waitClosed(10000ms);
  });
  // Short enough that a reply left parked fails the test by timing out.
  auto client = connectClient(peer, 1500ms);
  ASSERT_TRUE(client);
  startWrite(*client, w0_data, w0);
  // A's completion runs on the transport's thread and submits D from there.
  startWrite(*client, a_data, a, [&] { startRead(*client, reads['D']); });
  startRead(*client, reads['B']);
  startRead(*client, reads['C']);
  queued.notify();
  ASSERT_TRUE(a_answered.wait(5000ms));
  startRead(*client, reads['E']);  // waiting in the send queue behind A's batch
  startRead(*client, reads['F']);
  go.notify();

  for (auto [name, result] : {std::pair{"W0", w0}, std::pair{"A", a}}) {
    auto r = result->wait(5000ms);
    ASSERT_TRUE(r.has_value()) << "write " << name << " never completed";
    ASSERT_TRUE(*r) << "write " << name << ": " << r->error().toString();
    EXPECT_EQ(**r, kWriteSize);
  }
  auto start = Clock::now();
  for (auto& [name, read] : reads) {
    auto r = read.result->wait(5000ms);
    ASSERT_TRUE(r.has_value()) << "read " << name << " never completed";
    ASSERT_TRUE(*r) << "read " << name << ": " << r->error().toString()
                    << " (answered, but its reply was left parked)";
    EXPECT_EQ(**r, kReadSize);
    EXPECT_EQ(read.buffer.contents(), patternBytes(kReadSize, read.offset)) << name;
  }
  EXPECT_LT(msSince(start), 1000ms) << "answered reads waited for something";
  EXPECT_EQ(client->stats().timeouts, 0u);
}

}  // namespace
}  // namespace zcio::test
