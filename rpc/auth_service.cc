#include "rpc/auth_service.h"

#include "base/log.h"

namespace zcio::rpc {

class AuthSession final : public ServerSession {
 public:
  AuthSession(AuthService& service, std::string peer) : service_(service), peer_(std::move(peer)) {
    if (!service_.key_) open();
  }

  Result<OutgoingReply> handle(IncomingCall call) override {
    if (state_ == State::kRefused) {
      return makeError(EACCES, "call after a refused authentication");
    }
    if (call.header.op() == pb::OP_HELLO) return hello(call.header.hello());
    if (state_ == State::kOpen) return inner_->handle(std::move(call));
    return refuse("not authenticated: the first calls must be HELLO (this server needs a key)");
  }

 private:
  enum class State { kAwaitHello, kAwaitProof, kOpen, kRefused };

  void open() {
    state_ = State::kOpen;
    inner_ = service_.inner_.openSession(peer_);
  }

  OutgoingReply refuse(const std::string& why) {
    // One error reply says why; the next call closes the connection.
    state_ = State::kRefused;
    service_.counters_.refused.fetch_add(1, std::memory_order_relaxed);
    ZCIO_LOG(kWarn, peer_, ": authentication refused: ", why);
    return errorReply(EACCES, why);
  }

  Result<OutgoingReply> hello(const pb::Hello& h) {
    if (!service_.key_) {
      if (state_ != State::kOpen) open();
      OutgoingReply reply;
      reply.header.mutable_hello()->set_auth("none");
      return reply;
    }
    if (h.step() == 1 && state_ == State::kAwaitHello) {
      if (h.nonce().size() != kNonceSize) {
        return refuse("HELLO nonce of " + std::to_string(h.nonce().size()) + " bytes, expected " +
                      std::to_string(kNonceSize));
      }
      auto nonce = randomNonce();
      if (!nonce) return refuse(nonce.error().what);
      client_nonce_ = h.nonce();
      server_nonce_ = *nonce;
      state_ = State::kAwaitProof;
      OutgoingReply reply;
      auto* r = reply.header.mutable_hello();
      r->set_auth("hmac-sha256");
      r->set_nonce(server_nonce_);
      r->set_proof(service_.key_->proof(kServerLabel, client_nonce_, server_nonce_));
      return reply;
    }
    if (h.step() == 2 && state_ == State::kAwaitProof) {
      std::string expected = service_.key_->proof(kClientLabel, client_nonce_, server_nonce_);
      if (!equalInConstantTime(expected, h.proof())) {
        return refuse("wrong key: the client's proof does not match this export's key");
      }
      open();
      service_.counters_.authenticated.fetch_add(1, std::memory_order_relaxed);
      ZCIO_LOG(kInfo, peer_, ": authenticated (hmac-sha256)");
      OutgoingReply reply;
      reply.header.mutable_hello()->set_auth("hmac-sha256");
      return reply;
    }
    if (state_ == State::kOpen) return errorReply(EINVAL, "HELLO again: already authenticated");
    return refuse("HELLO step " + std::to_string(h.step()) + " out of order");
  }

  AuthService& service_;
  std::string peer_;
  State state_ = State::kAwaitHello;
  std::string client_nonce_;
  std::string server_nonce_;
  std::unique_ptr<ServerSession> inner_;
};

std::unique_ptr<ServerSession> AuthService::openSession(const std::string& peer) {
  return std::make_unique<AuthSession>(*this, peer);
}

}  // namespace zcio::rpc
