// A hostile or careless caller of fops::Client: bad iovecs, offsets and
// paths are refused before any byte moves and never cost the connection; a
// direct read into unmapped memory fails that one call; the server's error
// replies always fit the header limit. Real zcio-server over TCP.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fops/client.h"
#include "rpc/frame.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/scripted_peer.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

constexpr size_t kFileSize = 256 * 1024;

// One read or write entry point, run to its result (async ones included).
struct Variant {
  std::string name;
  std::function<Result<size_t>(fops::Client&, fops::FileHandle, std::span<const iovec>, uint64_t)>
      run;
};

Result<size_t> asyncResult(const std::function<void(fops::Client::IoCallback)>& start) {
  AsyncResult result;
  start(result.callback());
  auto r = result.wait(10s);
  if (!r) return makeError(ETIMEDOUT, "async call never completed");
  return *r;
}

std::vector<Variant> everyVariant() {
  using fops::Client;
  using fops::IoMode;
  std::vector<Variant> v;
  v.push_back(
      {"preadv", [](Client& c, auto fh, auto iov, auto off) { return c.preadv(fh, iov, off); }});
  v.push_back({"preadvDirect", [](Client& c, auto fh, auto iov, auto off) {
                 return c.preadvDirect(fh, iov, off);
               }});
  v.push_back(
      {"pwritev", [](Client& c, auto fh, auto iov, auto off) { return c.pwritev(fh, iov, off); }});
  v.push_back({"pwritevDirect", [](Client& c, auto fh, auto iov, auto off) {
                 return c.pwritevDirect(fh, iov, off);
               }});
  for (IoMode mode : {IoMode::kRegular, IoMode::kDirect}) {
    std::string m = mode == IoMode::kDirect ? "Direct" : "Regular";
    v.push_back({"preadvAsync" + m, [mode](Client& c, auto fh, auto iov, auto off) {
                   return asyncResult([&](auto cb) { c.preadvAsync(fh, iov, off, mode, cb); });
                 }});
    v.push_back({"pwritevAsync" + m, [mode](Client& c, auto fh, auto iov, auto off) {
                   return asyncResult([&](auto cb) { c.pwritevAsync(fh, iov, off, mode, cb); });
                 }});
  }
  return v;
}

class ClientArgs : public ::testing::Test {
 protected:
  void SetUp() override {
    content_ = writeRandomFile(dir_.file("f.bin"), kFileSize, 0xa9c0001);
    server_ = std::make_unique<ServerProcess>(dir_.path());
    auto c = fops::Client::connect(server_->tcpUrl());
    ASSERT_TRUE(c) << c.error().toString();
    client_ = std::move(*c);
    auto fh = client_->open("f.bin", O_RDWR);
    ASSERT_TRUE(fh) << fh.error().toString();
    fh_ = *fh;
  }
  void TearDown() override {
    client_.reset();
    if (server_) {
      EXPECT_EQ(server_->stop(), 0) << server_->log();
    }
  }

  // The connection still works: a direct read returns the file's bytes.
  void expectUsable(const std::string& after) {
    std::string buf(kFileSize, '\0');
    iovec v{buf.data(), buf.size()};
    auto r = client_->preadvDirect(fh_, {&v, 1}, 0);
    ASSERT_TRUE(r) << "after " << after << ": " << r.error().toString();
    EXPECT_EQ(*r, kFileSize) << "after " << after;
    EXPECT_TRUE(buf == content_) << "after " << after << ": the file's bytes differ";
  }

  TempDir dir_;
  std::string content_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<fops::Client> client_;
  fops::FileHandle fh_ = 0;
};

TEST_F(ClientArgs, NullBaseWithLengthIsEfaultOnEveryVariantAndNothingIsSent) {
  CanaryBuffer good(16);
  std::vector<iovec> iov{{good.data(), good.size()}, {nullptr, 4096}};
  for (const auto& variant : everyVariant()) {
    uint64_t requests = client_->stats().requests;
    auto r = variant.run(*client_, fh_, iov, 0);
    ASSERT_FALSE(r) << variant.name << " accepted a NULL base";
    EXPECT_EQ(r.error().code, EFAULT) << variant.name << ": " << r.error().toString();
    EXPECT_EQ(client_->stats().requests, requests) << variant.name << " sent a call";
    EXPECT_TRUE(good.untouched()) << variant.name << " wrote into the valid iovec";
    ASSERT_NO_FATAL_FAILURE(expectUsable(variant.name));
  }
  // A NULL base of length 0 is no fault (preadv(2) accepts it too).
  std::string buf(100, '\0');
  std::vector<iovec> empty_first{{nullptr, 0}, {buf.data(), buf.size()}};
  auto r = client_->preadvDirect(fh_, empty_first, 0);
  ASSERT_TRUE(r) << r.error().toString();
  EXPECT_EQ(buf, content_.substr(0, 100));
  // No refused write reached the file.
  EXPECT_TRUE(readLocalFile(dir_.file("f.bin")) == content_);
}

TEST_F(ClientArgs, BadCountsLengthsAndOffsetsAreEinvalOnEveryVariant) {
  CanaryBuffer good(16);
  std::vector<iovec> too_many(IOV_MAX + 1, iovec{good.data(), 1});
  // Non-NULL bases whose lengths sum past SSIZE_MAX: refused before use.
  std::vector<iovec> overflow{{good.data(), SIZE_MAX / 2 + 1}, {good.data(), SIZE_MAX / 2 + 1}};
  std::vector<iovec> one{{good.data(), good.size()}};
  struct Case {
    const char* what;
    std::vector<iovec>* iov;
    uint64_t offset;
  } cases[] = {{"IOV_MAX + 1 iovecs", &too_many, 0},
               {"lengths overflowing ssize_t", &overflow, 0},
               {"offset past INT64_MAX", &one, uint64_t{1} << 63},
               {"offset + length past INT64_MAX", &one, static_cast<uint64_t>(INT64_MAX) - 4}};
  for (const auto& variant : everyVariant()) {
    for (const auto& c : cases) {
      uint64_t requests = client_->stats().requests;
      auto r = variant.run(*client_, fh_, *c.iov, c.offset);
      ASSERT_FALSE(r) << variant.name << " accepted " << c.what;
      EXPECT_EQ(r.error().code, EINVAL)
          << variant.name << ", " << c.what << ": " << r.error().toString();
      EXPECT_EQ(client_->stats().requests, requests) << variant.name << " sent " << c.what;
    }
    EXPECT_TRUE(good.untouched()) << variant.name;
  }
  ASSERT_NO_FATAL_FAILURE(expectUsable("the refused calls"));
  EXPECT_TRUE(readLocalFile(dir_.file("f.bin")) == content_);
}

// Three pages with the middle one unmapped.
class Hole {
 public:
  Hole() {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    void* p = mmap(nullptr, 3 * page_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    base_ = static_cast<char*>(p);
    munmap(base_ + page_, page_);
  }
  ~Hole() {
    if (base_ == nullptr) return;
    munmap(base_, page_);
    munmap(base_ + 2 * page_, page_);
  }
  bool ok() const { return base_ != nullptr; }
  char* before() const { return base_; }  // a mapped page
  char* hole() const { return base_ + page_; }
  size_t page() const { return page_; }

 private:
  char* base_ = nullptr;
  size_t page_ = 0;
};

TEST_F(ClientArgs, DirectReadIntoUnmappedMemoryFailsThatCallOnlyWithEfault) {
  Hole hole;
  ASSERT_TRUE(hole.ok()) << "mmap: " << std::strerror(errno);
  const size_t page = hole.page();

  // The whole destination unmapped.
  iovec bad{hole.hole(), page};
  auto r = client_->preadvDirect(fh_, {&bad, 1}, 0);
  ASSERT_FALSE(r) << "a read into an unmapped page succeeded";
  EXPECT_EQ(r.error().code, EFAULT) << r.error().toString();
  ASSERT_NO_FATAL_FAILURE(expectUsable("the unmapped destination"));

  // Mapped, then unmapped part-way through the payload; a second call is in
  // flight behind it and must still get its own, correct bytes.
  uint64_t discarded = client_->stats().bytes_discarded;
  std::vector<iovec> split{{hole.before(), page}, {hole.hole(), page}};
  CanaryBuffer next(64 * 1024);
  AsyncResult first;
  AsyncResult second;
  client_->preadvAsync(fh_, split, 0, fops::IoMode::kDirect, first.callback());
  client_->preadvAsync(fh_, next.iov(), 4096, fops::IoMode::kDirect, second.callback());
  auto a = first.wait(10s);
  auto b = second.wait(10s);
  ASSERT_TRUE(a && b) << "a call never completed";
  ASSERT_FALSE(*a) << "a read through a hole succeeded";
  EXPECT_EQ(a->error().code, EFAULT) << a->error().toString();
  ASSERT_TRUE(*b) << "the call behind it failed: " << b->error().toString();
  EXPECT_EQ(**b, next.size());
  EXPECT_TRUE(next.contents() == content_.substr(4096, next.size()));
  EXPECT_TRUE(next.guardsIntact());
  // The bytes after the fault were drained, not left in the stream.
  EXPECT_GT(client_->stats().bytes_discarded, discarded);
  // What landed before the hole is the file's (no other bytes went there).
  EXPECT_TRUE(std::string(hole.before(), page) == content_.substr(0, page) ||
              std::string(hole.before(), page) == std::string(page, '\0'));
  ASSERT_NO_FATAL_FAILURE(expectUsable("the split destination"));
  EXPECT_EQ(client_->stats().protocol_errors, 0u);
}

TEST_F(ClientArgs, OverlongPathsAreEnametoolongAndTheConnectionLives) {
  // PATH_MAX and a 4000-byte one the server sees; 65,524 makes the largest
  // call that still fits a header; 65,531 and more do not fit and are not
  // sent.
  for (size_t length : {size_t{PATH_MAX}, size_t{65524}, size_t{65531}, size_t{200000}}) {
    std::string path(length, 'p');
    auto fh = client_->open(path, O_RDONLY);
    ASSERT_FALSE(fh) << length;
    EXPECT_EQ(fh.error().code, ENAMETOOLONG) << length << ": " << fh.error().toString();
    EXPECT_LT(fh.error().what.size(), 2048u) << "the reason quotes the path";
    auto st = client_->stat(path);
    ASSERT_FALSE(st) << length;
    EXPECT_EQ(st.error().code, ENAMETOOLONG) << length << ": " << st.error().toString();
    auto ok = client_->stat("f.bin");
    ASSERT_TRUE(ok) << "after a " << length << "-byte path: " << ok.error().toString();
    EXPECT_EQ(ok->size, kFileSize);
  }
  ASSERT_NO_FATAL_FAILURE(expectUsable("the long paths"));
  EXPECT_EQ(client_->stats().protocol_errors, 0u);
}

TEST_F(ClientArgs, LongErrorReasonsAreCutToFitTheReply) {
  // 4000 bytes: under PATH_MAX, so the server tries it and its ENOENT reason
  // would quote all of it.
  std::string path = "missing/" + std::string(200, 'd');
  while (path.size() < 4000) path += "/" + std::string(200, 'd');
  auto st = client_->stat(path);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().code, 0);
  EXPECT_LE(st.error().what.size(), 1024u + 64) << st.error().toString();
  EXPECT_NE(st.error().what.find("(truncated)"), std::string::npos) << st.error().toString();
  ASSERT_NO_FATAL_FAILURE(expectUsable("a long error reason"));
}

TEST(ServerHeaderLimit, RawOpenOfTheLongestPathThatFitsGetsAReplyThatFits) {
  TempDir dir;
  ServerProcess server(dir.path());
  auto sock = FrameSocket::connectTo(server.port());
  ASSERT_TRUE(sock.valid());
  rpc::pb::Call call;
  call.set_op(rpc::pb::OP_OPEN);
  call.set_flags(rpc::pb::OPEN_READ);
  call.set_path(std::string(65524, 'p'));
  ASSERT_LE(call.ByteSizeLong(), rpc::kMaxHeaderLength);
  ASSERT_TRUE(sock.sendCall(7, call));
  auto frame = sock.readFrame();
  ASSERT_TRUE(frame) << "no reply; server log:\n" << server.log();
  EXPECT_EQ(frame->preamble.xid, 7u);
  EXPECT_LE(frame->preamble.header_length, rpc::kMaxHeaderLength);
  rpc::pb::Reply reply;
  ASSERT_TRUE(reply.ParseFromString(frame->header));
  EXPECT_EQ(reply.error(), ENAMETOOLONG) << reply.message();
  EXPECT_LE(reply.message().size(), 1024u);
  // The same connection serves the next call.
  rpc::pb::Call stat;
  stat.set_op(rpc::pb::OP_STAT);
  stat.set_path(".");
  ASSERT_TRUE(sock.sendCall(8, stat));
  auto next = sock.readFrame();
  ASSERT_TRUE(next) << server.log();
  EXPECT_EQ(next->preamble.xid, 8u);
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace zcio::test
