// Server lifecycle: clean SIGTERM exits with connections open and calls in
// flight; clients of a server that went away get a clear error promptly;
// a stalled server makes calls time out (or be cancelled) without its late
// replies ever landing in the caller's memory.
#include <fcntl.h>
#include <signal.h>

#include <random>
#include <thread>

#include "test/integration/helpers.h"

namespace zcio::itest {
namespace {

using namespace std::chrono_literals;
constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * 1024;

bool isConnectionError(int code) {
  return code == ECONNRESET || code == EPIPE || code == ECONNABORTED || code == ENOTCONN ||
         code == ESHUTDOWN;
}

template <typename F>
std::chrono::milliseconds timed(F&& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0);
}

// Polls `pred` for up to `limit`.
template <typename P>
bool eventually(P&& pred, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

class ServerLifecycle : public ServerFixture {
 protected:
  // The safety net: a client whose calls would hang fails this way instead
  // of blocking the test forever; the tests assert they fail much sooner.
  fops::ClientOptions boundedOptions() {
    fops::ClientOptions o;
    o.timeout = 20s;
    return o;
  }
  void pause() { ASSERT_TRUE(pauseProcess(server_->pid())) << "server did not stop"; }
  void resume() { ASSERT_TRUE(resumeProcess(server_->pid())); }
};

TEST_F(ServerLifecycle, StopsCleanlyWithConnectionsOpenAndClientsThenGetAClearError) {
  std::string content = test::writeRandomFile(dir_->file("f"), MiB, testSeed(0x11fe0001));
  auto a = connect(boundedOptions());
  auto b = connect(boundedOptions());
  ASSERT_TRUE(a && b);
  auto fa = a->open("f", O_RDONLY);
  auto fb = b->open("f", O_RDWR);
  ASSERT_TRUE(fa && fb);
  std::string buf(4096, '\0');
  iovec iov{buf.data(), buf.size()};
  ASSERT_EQ(*a->preadvDirect(*fa, {&iov, 1}, 0), buf.size());

  // Open connections, open files: the server still exits 0, promptly.
  auto took = timed([&] { stopServerCleanly(); });
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_LT(took, 3s);

  // Every client now fails fast with a connection error, for every kind of
  // call, and never writes into the buffer.
  std::string canary(4096, static_cast<char>(kCanary));
  for (fops::Client* c : {a.get(), b.get(), client_.get()}) {
    buf = canary;
    iov = {buf.data(), buf.size()};
    Result<size_t> r = size_t{0};
    auto elapsed = timed([&] { r = c->preadvDirect(*fa, {&iov, 1}, 0); });
    ASSERT_FALSE(r) << "read succeeded against a stopped server";
    EXPECT_TRUE(isConnectionError(r.error().code)) << r.error().toString();
    EXPECT_LT(elapsed, 2s);
    EXPECT_TRUE(buf == canary);
    auto w = c->pwritev(*fb, {&iov, 1}, 0);
    ASSERT_FALSE(w);
    EXPECT_TRUE(isConnectionError(w.error().code)) << w.error().toString();
    auto st = c->stat("f");
    ASSERT_FALSE(st);
    EXPECT_TRUE(isConnectionError(st.error().code)) << st.error().toString();
  }
  // A new connection is refused.
  auto again = fops::Client::connect(server_->url());
  ASSERT_FALSE(again);
  if (!rdmaUnderTest()) {
    EXPECT_EQ(again.error().code, ECONNREFUSED) << again.error().toString();
  }
  EXPECT_TRUE(test::readLocalFile(dir_->file("f")) == content);
}

TEST_F(ServerLifecycle, KilledServerFailsEveryPendingCallPromptlyAndTouchesNoBuffer) {
  std::mt19937_64 rng(testSeed(0x11fe0002));
  test::writeRandomFile(dir_->file("f"), 8 * MiB, rng());
  auto c = connect(boundedOptions());
  ASSERT_NE(c, nullptr);
  auto fh = c->open("f", O_RDWR);
  ASSERT_TRUE(fh) << fh.error().toString();

  // Stop the server so none of the calls below can be answered, then kill
  // it: each must fail with a connection error, not hang to its timeout.
  ASSERT_NO_FATAL_FAILURE(pause());
  constexpr size_t kCalls = 64;
  std::vector<std::unique_ptr<ScatterBuffer>> buffers;
  Latch latch(kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    buffers.push_back(std::make_unique<ScatterBuffer>(64 * KiB + i, 1 + i % 5, rng));
    auto mode = i % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular;
    if (i % 4 == 3) {
      buffers.back()->fill(randomBytes(buffers.back()->total(), rng));
      c->pwritevAsync(*fh, buffers.back()->iov(), i * 64 * KiB, mode, latch.callback(i));
    } else {
      c->preadvAsync(*fh, buffers.back()->iov(), i * 64 * KiB, mode, latch.callback(i));
    }
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(latch.completed(), 0u) << "calls completed while the server was stopped";
  ASSERT_EQ(kill(server_->pid(), SIGKILL), 0);
  auto took = timed([&] { ASSERT_TRUE(latch.wait(5s)) << latch.completed() << " of " << kCalls; });
  EXPECT_LT(took, 3s);
  for (size_t i = 0; i < kCalls; ++i) {
    const auto& r = latch.result(i);
    ASSERT_FALSE(r) << "call " << i << " succeeded against a killed server";
    EXPECT_TRUE(isConnectionError(r.error().code)) << "call " << i << ": " << r.error().toString();
    if (i % 4 != 3) {
      auto bad = buffers[i]->check("");
      ASSERT_FALSE(bad) << "call " << i << ": " << *bad;
    }
  }
  EXPECT_EQ(latch.duplicates(), 0u);
  // Later calls fail at once too.
  auto st = c->fstat(*fh);
  ASSERT_FALSE(st);
  EXPECT_TRUE(isConnectionError(st.error().code)) << st.error().toString();
  EXPECT_EQ(server_->stop(), 128 + SIGKILL);
}

TEST_F(ServerLifecycle, SigtermWithCallsInFlightExitsCleanlyAndEveryCallCompletes) {
  std::mt19937_64 rng(testSeed(0x11fe0003));
  const size_t size = 16 * MiB;
  std::string content = test::writeRandomFile(dir_->file("f"), size, rng());
  auto c = connect(boundedOptions());
  ASSERT_NE(c, nullptr);
  auto fh = c->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  ASSERT_NO_FATAL_FAILURE(pause());
  constexpr size_t kCalls = 64;
  std::vector<std::unique_ptr<ScatterBuffer>> buffers;
  std::vector<uint64_t> offsets;
  Latch latch(kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    offsets.push_back(rng() % (size - MiB));
    buffers.push_back(std::make_unique<ScatterBuffer>(MiB, 1 + i % 3, rng));
    c->preadvAsync(*fh, buffers.back()->iov(), offsets.back(),
                   i % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular, latch.callback(i));
  }
  std::this_thread::sleep_for(50ms);
  // SIGTERM arrives while calls are queued; the server wakes up to it.
  ASSERT_EQ(kill(server_->pid(), SIGTERM), 0);
  ASSERT_NO_FATAL_FAILURE(resume());
  ASSERT_TRUE(latch.wait(10s)) << latch.completed() << " of " << kCalls;
  size_t ok = 0;
  for (size_t i = 0; i < kCalls; ++i) {
    const auto& r = latch.result(i);
    if (r) {
      ++ok;
      ASSERT_EQ(*r, MiB);
      auto bad = buffers[i]->check(content.substr(offsets[i], MiB));
      ASSERT_FALSE(bad) << "call " << i << ": " << *bad;
    } else {
      EXPECT_TRUE(isConnectionError(r.error().code))
          << "call " << i << ": " << r.error().toString();
      // A regular read copies only on success; a direct one may have
      // received part of its payload before the connection dropped, but
      // only the file's bytes, in their places.
      auto bad =
          i % 2 ? buffers[i]->checkPartial(content.substr(offsets[i], MiB)) : buffers[i]->check("");
      ASSERT_FALSE(bad) << "failed call " << i << ": " << *bad;
    }
  }
  std::printf("%zu of %zu calls completed before the server stopped\n", ok, kCalls);
  stopServerCleanly();
}

TEST_F(ServerLifecycle, StalledServerTimesOutAndLateRepliesAreDiscarded) {
  std::mt19937_64 rng(testSeed(0x11fe0004));
  std::string content = test::writeRandomFile(dir_->file("f"), 4 * MiB, rng());
  fops::ClientOptions o;
  o.timeout = 300ms;
  auto c = connect(o);
  ASSERT_NE(c, nullptr);
  auto fh = c->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  ASSERT_NO_FATAL_FAILURE(pause());
  ScatterBuffer direct(MiB, 4, rng);
  ScatterBuffer regular(MiB / 2, 3, rng);
  Result<size_t> r = size_t{0};
  auto took = timed([&] { r = c->preadvDirect(*fh, direct.iov(), 0); });
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ETIMEDOUT) << r.error().toString();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
  auto r2 = c->preadv(*fh, regular.iov(), MiB);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, ETIMEDOUT) << r2.error().toString();
  EXPECT_EQ(c->stats().timeouts, 2u);

  // The server wakes up and answers both; the client drains the payloads.
  ASSERT_NO_FATAL_FAILURE(resume());
  if (rdmaUnderTest()) {
    // The calls' rkeys were revoked before they completed: the server's late
    // RDMA WRITE fails with a remote access error and it closes the
    // connection. The memory stays untouched; the connection does not survive.
    ASSERT_TRUE(eventually(
        [&] { return server_->log().find("remote access error") != std::string::npos; }, 10s))
        << server_->log();
  } else {
    ASSERT_TRUE(eventually([&] { return c->stats().late_replies >= 2; }, 10s))
        << "late replies: " << c->stats().late_replies;
  }
  if (!rdmaUnderTest()) {  // TCP drains late payloads into scratch
    EXPECT_TRUE(eventually([&] { return c->stats().bytes_discarded == MiB + MiB / 2; }, 5s))
        << "discarded " << c->stats().bytes_discarded;
  }
  auto bad = direct.check("");
  ASSERT_FALSE(bad) << "late reply landed in the timed-out call's memory: " << *bad;
  bad = regular.check("");
  ASSERT_FALSE(bad) << *bad;

  // The connection is fine afterwards (over RDMA: a new one, with the
  // default timeout: across the two-host link 1 MiB can take over 300 ms).
  if (rdmaUnderTest()) {
    c = connect();
    ASSERT_NE(c, nullptr);
    fh = c->open("f", O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
  }
  ScatterBuffer fresh(MiB, 5, rng);
  auto n = c->preadvDirect(*fh, fresh.iov(), 3);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_FALSE(fresh.check(content.substr(3, MiB)));
  stopServerCleanly();
}

TEST_F(ServerLifecycle, WriteStuckOnTheWireToAStalledServerStillFailsInBoundedTime) {
  fops::ClientOptions o;
  o.timeout = 300ms;
  auto c = connect(o);
  ASSERT_NE(c, nullptr);
  auto fh = c->open("w", O_RDWR | O_CREAT | O_TRUNC, 0600);
  ASSERT_TRUE(fh) << fh.error().toString();

  // 32 MiB cannot fit in the socket buffers of a server that reads nothing,
  // so the direct write is still on the wire (the transport holds the
  // caller's memory) when its deadline passes. It must not wait for the
  // server forever: the connection is given up after a grace period.
  ASSERT_NO_FATAL_FAILURE(pause());
  std::string big(32 * MiB, 'z');
  iovec iov{big.data(), big.size()};
  Latch latch(1);
  auto took = timed([&] {
    c->pwritevAsync(*fh, {&iov, 1}, 0, fops::IoMode::kDirect, latch.callback(0));
    ASSERT_TRUE(latch.wait(10s)) << "a write to a stalled server never completed";
  });
  ASSERT_FALSE(latch.result(0));
  EXPECT_EQ(latch.result(0).error().code, ETIMEDOUT) << latch.result(0).error().toString();
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 6s);
  ASSERT_NO_FATAL_FAILURE(resume());

  // The server sees a truncated frame on that connection, drops it (the
  // partial write is never applied) and keeps serving others.
  auto other = connect();
  ASSERT_NE(other, nullptr);
  auto st = other->stat("w");
  ASSERT_TRUE(st) << st.error().toString();
  EXPECT_EQ(st->size, 0u) << "a write whose frame never arrived whole was applied";
  stopServerCleanly();
}

TEST_F(ServerLifecycle, CancelledCallOnStalledServerCompletesAtOnceAndItsReplyIsDiscarded) {
  std::mt19937_64 rng(testSeed(0x11fe0005));
  std::string content = test::writeRandomFile(dir_->file("f"), 2 * MiB, rng());
  auto c = connect(boundedOptions());
  ASSERT_NE(c, nullptr);
  auto fh = c->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  ASSERT_NO_FATAL_FAILURE(pause());
  ScatterBuffer buffer(MiB, 6, rng);
  Latch latch(1);
  auto call = c->preadvAsync(*fh, buffer.iov(), 0, fops::IoMode::kDirect, latch.callback(0));
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(latch.completed(), 0u);
  c->cancel(call);
  ASSERT_TRUE(latch.wait(2s)) << "cancel did not complete the call";
  ASSERT_FALSE(latch.result(0));
  EXPECT_EQ(latch.result(0).error().code, ECANCELED);
  EXPECT_EQ(c->stats().cancels, 1u);

  ASSERT_NO_FATAL_FAILURE(resume());
  if (rdmaUnderTest()) {  // see StalledServerTimesOutAndLateRepliesAreDiscarded
    ASSERT_TRUE(eventually(
        [&] { return server_->log().find("remote access error") != std::string::npos; }, 10s))
        << server_->log();
  } else {
    ASSERT_TRUE(eventually([&] { return c->stats().late_replies >= 1; }, 10s));
  }
  if (!rdmaUnderTest()) {
    EXPECT_TRUE(eventually([&] { return c->stats().bytes_discarded == MiB; }, 5s))
        << c->stats().bytes_discarded;
  }
  auto bad = buffer.check("");
  ASSERT_FALSE(bad) << "cancelled call's memory was written: " << *bad;
  // Cancelling again after completion is harmless.
  c->cancel(call);
  EXPECT_EQ(latch.duplicates(), 0u);
  if (rdmaUnderTest()) {
    c = connect(boundedOptions());
    ASSERT_NE(c, nullptr);
    fh = c->open("f", O_RDONLY);
    ASSERT_TRUE(fh) << fh.error().toString();
  }
  ScatterBuffer fresh(4096, 2, rng);
  auto n = c->preadv(*fh, fresh.iov(), 0);
  ASSERT_TRUE(n) << n.error().toString();
  ASSERT_FALSE(fresh.check(content.substr(0, 4096)));
  stopServerCleanly();
}

TEST_F(ServerLifecycle, ClientDestroyedWithCallsInFlightFailsThemAndTheServerCarriesOn) {
  std::mt19937_64 rng(testSeed(0x11fe0006));
  std::string content = test::writeRandomFile(dir_->file("f"), 2 * MiB, rng());
  auto doomed = connect(boundedOptions());
  ASSERT_NE(doomed, nullptr);
  auto fh = doomed->open("f", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  ASSERT_NO_FATAL_FAILURE(pause());
  constexpr size_t kCalls = 16;
  std::vector<std::unique_ptr<ScatterBuffer>> buffers;
  Latch latch(kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    buffers.push_back(std::make_unique<ScatterBuffer>(100 * KiB, 2, rng));
    doomed->preadvAsync(*fh, buffers.back()->iov(), i * 100 * KiB,
                        i % 2 ? fops::IoMode::kDirect : fops::IoMode::kRegular, latch.callback(i));
  }
  std::this_thread::sleep_for(50ms);
  auto took = timed([&] { doomed.reset(); });
  EXPECT_LT(took, 2s);
  // The destructor returned: every callback has run, with ESHUTDOWN.
  ASSERT_EQ(latch.completed(), kCalls);
  for (size_t i = 0; i < kCalls; ++i) {
    ASSERT_FALSE(latch.result(i));
    EXPECT_EQ(latch.result(i).error().code, ESHUTDOWN) << latch.result(i).error().toString();
    ASSERT_FALSE(buffers[i]->check(""));
  }
  ASSERT_NO_FATAL_FAILURE(resume());
  // The server drops the dead peer's session and serves the others.
  for (int i = 0; i < 20; ++i) {
    auto c = connect();
    ASSERT_NE(c, nullptr);
    auto f = c->open("f", O_RDONLY);
    ASSERT_TRUE(f) << f.error().toString();
    ScatterBuffer b(1000 + i, 2, rng);
    auto n = (i % 2 ? c->preadvDirect(*f, b.iov(), i) : c->preadv(*f, b.iov(), i));
    ASSERT_TRUE(n) << n.error().toString();
    ASSERT_FALSE(b.check(content.substr(i, 1000 + i)));
    if (i % 3 == 0) {
      ASSERT_TRUE(c->close(*f));  // others are left open at disconnect
    }
  }
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
