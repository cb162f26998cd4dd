// The CLI's transfer engine (tools/transfer.*) against a real zcio-server.
// readFile with fewer blocks than --qd issues one call per block from the
// calling thread while earlier calls already complete on the transport's
// thread; every block must still be issued, and readFile must return.
#include <fcntl.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <thread>

#include "tcp/client_transport.h"
#include "test/integration/helpers.h"
#include "tools/transfer.h"

namespace zcio::itest {
namespace {

using namespace std::chrono_literals;

// Forwards to a real transport; a submit from the thread that made it (the
// caller's, not the transport's) returns only after `delay`, so replies to
// earlier calls arrive while the caller is still issuing.
class SlowCallerTransport final : public rpc::Transport {
 public:
  SlowCallerTransport(std::unique_ptr<rpc::Transport> inner, std::chrono::milliseconds delay)
      : inner_(std::move(inner)), delay_(delay) {}

  // The thread whose submits are slowed.
  void slowDown(std::thread::id caller) { caller_ = caller; }

  void submit(rpc::CallPtr call) override {
    inner_->submit(std::move(call));
    if (std::this_thread::get_id() == caller_) std::this_thread::sleep_for(delay_);
  }
  void cancel(rpc::CallPtr call) override { inner_->cancel(std::move(call)); }
  void shutdown() override { inner_->shutdown(); }
  const rpc::TransportCounters& counters() const override { return inner_->counters(); }
  std::shared_ptr<iobuf::BufferPool> payloadPool() const override { return inner_->payloadPool(); }
  Result<void> registerMemory(void* addr, size_t length) override {
    return inner_->registerMemory(addr, length);
  }
  Result<void> deregisterMemory(void* addr, size_t length) override {
    return inner_->deregisterMemory(addr, length);
  }
  std::string describe() const override { return inner_->describe(); }

 private:
  std::unique_ptr<rpc::Transport> inner_;
  std::chrono::milliseconds delay_;
  std::atomic<std::thread::id> caller_{};
};

TEST(Transfer, ReadFileWithFewerBlocksThanQueueDepthIssuesEveryBlockAndReturns) {
  if (rdmaUnderTest()) GTEST_SKIP() << "drives the TCP transport directly";
  constexpr uint64_t kBlock = 64 * 1024;
  constexpr uint64_t kBlocks = 10;
  test::TempDir dir;
  test::writeRandomFile(dir.file("f.bin"), kBlock * kBlocks, 7);
  test::ServerProcess server(dir.path());
  auto tcp = tcp::TcpClientTransport::connect("127.0.0.1", server.port());
  ASSERT_TRUE(tcp) << tcp.error().toString();
  auto slow = std::make_unique<SlowCallerTransport>(std::move(*tcp), 20ms);
  SlowCallerTransport* transport = slow.get();
  fops::Client client(std::move(slow), fops::ClientOptions{});
  auto fh = client.open("f.bin", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  tools::TransferOptions options;
  options.mode = fops::IoMode::kDirect;
  options.block = kBlock;
  options.queue_depth = 32;  // more lanes than blocks: no lane issues a second call
  std::promise<Result<tools::TransferReport>> promise;
  auto future = promise.get_future();
  std::thread reader([&] {
    transport->slowDown(std::this_thread::get_id());
    promise.set_value(tools::readFile(client, *fh, kBlock * kBlocks, options));
  });
  if (future.wait_for(20s) != std::future_status::ready) {
    // readFile waits for blocks it never issued; its thread holds references
    // into this frame, so nothing here can unwind: report and leave.
    ADD_FAILURE() << "readFile still waiting after 20 s: a block was never issued, so no "
                     "call timeout can end the wait";
    server.stop();
    std::fflush(nullptr);
    std::_Exit(1);
  }
  reader.join();
  auto report = future.get();
  ASSERT_TRUE(report) << report.error().toString();
  EXPECT_EQ(report->bytes, kBlock * kBlocks);
  EXPECT_EQ(report->requests, kBlocks);
}

}  // namespace
}  // namespace zcio::itest
