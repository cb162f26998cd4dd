// The HELLO handshake attacked with raw frames against a real zcio-server
// that has a key: no call is served before a valid proof, a refused
// connection is closed on its next frame, and the server keeps serving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "rpc/shared_key.h"
#include "test/adversarial/adversarial_util.h"
#include "test/support/scripted_peer.h"
#include "test/support/server_process.h"
#include "test/support/temp_dir.h"

namespace zcio::test {
namespace {

namespace pb = rpc::pb;

const std::string kKey = "an export key of some length 0123456789";

class AuthUnderAttack : public ::testing::Test {
 protected:
  void SetUp() override {
    writeRandomFile(exported_.file("data.bin"), 1000, 5);
    key_path_ = keys_.file("key");
    int fd = ::open(key_path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, kKey.data(), kKey.size()), static_cast<ssize_t>(kKey.size()));
    ::close(fd);
    server_ = std::make_unique<ServerProcess>(exported_.path(),
                                              std::vector<std::string>{"--key-file", key_path_});
  }

  void TearDown() override {
    ASSERT_TRUE(server_->alive()) << server_->log();
    EXPECT_EQ(server_->stop(), 0) << server_->log();
  }

  static pb::Call stat(const std::string& path) {
    pb::Call call;
    call.set_op(pb::OP_STAT);
    call.set_path(path);
    return call;
  }

  static pb::Call hello(uint32_t step, const std::string& nonce, const std::string& proof) {
    pb::Call call;
    call.set_op(pb::OP_HELLO);
    call.mutable_hello()->set_step(step);
    call.mutable_hello()->set_nonce(nonce);
    call.mutable_hello()->set_proof(proof);
    return call;
  }

  // A refused connection: one EACCES reply that serves nothing, then the
  // next frame closes it.
  static void expectRefusedThenClosed(FrameSocket& s, uint64_t xid) {
    auto reply = s.readReply();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->xid, xid);
    EXPECT_EQ(reply->reply.error(), EACCES) << reply->reply.message();
    EXPECT_FALSE(reply->reply.has_attr()) << "a refused call was answered with attributes";
    ASSERT_TRUE(s.sendCall(xid + 1, stat("data.bin")));
    EXPECT_TRUE(s.waitClosed()) << "the refused connection stayed open";
  }

  TempDir keys_;
  TempDir exported_;
  std::string key_path_;
  std::unique_ptr<ServerProcess> server_;
};

TEST_F(AuthUnderAttack, ACallBeforeHelloIsRefusedAndServesNothing) {
  auto s = FrameSocket::connectTo(server_->port());
  ASSERT_TRUE(s.sendCall(7, stat("data.bin")));
  expectRefusedThenClosed(s, 7);
}

TEST_F(AuthUnderAttack, AWrongProofIsRefused) {
  auto s = FrameSocket::connectTo(server_->port());
  std::string nonce(rpc::kNonceSize, 'n');
  ASSERT_TRUE(s.sendCall(1, hello(1, nonce, "")));
  auto challenge = s.readReply();
  ASSERT_TRUE(challenge);
  ASSERT_EQ(challenge->reply.error(), 0) << challenge->reply.message();
  EXPECT_EQ(challenge->reply.hello().auth(), "hmac-sha256");
  // The server's proof is checkable with the key; a guess of ours is not it.
  auto key = rpc::SharedKey::fromBytes(kKey);
  EXPECT_EQ(challenge->reply.hello().proof(),
            key.proof(rpc::kServerLabel, nonce, challenge->reply.hello().nonce()));
  // Replaying the server's own proof as ours must not work either.
  ASSERT_TRUE(s.sendCall(2, hello(2, "", challenge->reply.hello().proof())));
  expectRefusedThenClosed(s, 2);
  EXPECT_NE(server_->log().find("wrong key"), std::string::npos) << server_->log();
}

TEST_F(AuthUnderAttack, StepsOutOfOrderOrBadNoncesAreRefused) {
  {
    auto s = FrameSocket::connectTo(server_->port());
    ASSERT_TRUE(s.sendCall(1, hello(2, "", std::string(32, 'p'))));
    expectRefusedThenClosed(s, 1);
  }
  {
    auto s = FrameSocket::connectTo(server_->port());
    ASSERT_TRUE(s.sendCall(1, hello(1, "short", "")));
    expectRefusedThenClosed(s, 1);
  }
}

TEST_F(AuthUnderAttack, TheRightProofOpensTheConnection) {
  auto s = FrameSocket::connectTo(server_->port());
  std::string nonce(rpc::kNonceSize, 'c');
  ASSERT_TRUE(s.sendCall(1, hello(1, nonce, "")));
  auto challenge = s.readReply();
  ASSERT_TRUE(challenge);
  auto key = rpc::SharedKey::fromBytes(kKey);
  std::string proof = key.proof(rpc::kClientLabel, nonce, challenge->reply.hello().nonce());
  ASSERT_TRUE(s.sendCall(2, hello(2, "", proof)));
  auto accepted = s.readReply();
  ASSERT_TRUE(accepted);
  EXPECT_EQ(accepted->reply.error(), 0) << accepted->reply.message();
  ASSERT_TRUE(s.sendCall(3, stat("data.bin")));
  auto attr = s.readReply();
  ASSERT_TRUE(attr);
  EXPECT_EQ(attr->reply.error(), 0) << attr->reply.message();
  EXPECT_EQ(attr->reply.attr().size(), 1000u);
}

}  // namespace
}  // namespace zcio::test
