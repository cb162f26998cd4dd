#include "rpc/auth_client.h"

#include <future>

namespace zcio::rpc {
namespace {

Result<pb::Reply> helloCall(Transport& transport, pb::Hello hello,
                            std::chrono::milliseconds timeout) {
  auto call = std::make_shared<Call>();
  call->header.set_op(pb::OP_HELLO);
  *call->header.mutable_hello() = std::move(hello);
  call->timeout = timeout;
  std::promise<Result<ReplyData>> promise;
  auto future = promise.get_future();
  call->done = [&promise](Result<ReplyData> r) { promise.set_value(std::move(r)); };
  transport.submit(call);
  auto reply = future.get();  // the transport completes every call, by its timeout at the latest
  if (!reply) return reply.error();
  return std::move(reply->header);
}

Error serverError(const pb::Reply& reply) {
  return makeError(reply.error(), "server: " + (reply.message().empty() ? std::string("refused")
                                                                        : reply.message()));
}

}  // namespace

Result<void> authenticate(Transport& transport, const SharedKey* key,
                          std::chrono::milliseconds timeout) {
  auto client_nonce = randomNonce();
  if (!client_nonce) return client_nonce.error();
  pb::Hello first;
  first.set_step(1);
  first.set_nonce(*client_nonce);
  auto reply = helloCall(transport, first, timeout);
  if (!reply) return reply.error();
  if (reply->error() == ENOSYS) {
    // An older server: it cannot prove anything, so only a keyless client goes on.
    if (key == nullptr) return okResult();
    return makeError(EPROTONOSUPPORT,
                     "the server has no HELLO (an older zcio-server): it cannot prove it holds "
                     "the key, so the connection is refused");
  }
  if (reply->error() != 0) return serverError(*reply);
  const pb::HelloReply& h = reply->hello();
  if (h.auth() == "none") {
    if (key == nullptr) return okResult();
    return makeError(EACCES,
                     "the server runs without authentication (--auth none) but this client has a "
                     "key: refusing a server that cannot prove it holds the key");
  }
  if (h.auth() != "hmac-sha256") {
    return makeError(EPROTONOSUPPORT, "the server asks for authentication '" + h.auth() +
                                          "', which this client does not know");
  }
  if (key == nullptr) {
    return makeError(EACCES,
                     "the server requires authentication: give its key file (--key-file, "
                     "ZCIO_KEY_FILE or ClientOptions::key_file)");
  }
  if (h.nonce().size() != kNonceSize ||
      !equalInConstantTime(h.proof(), key->proof(kServerLabel, *client_nonce, h.nonce()))) {
    return makeError(EACCES,
                     "the server's proof does not match this client's key: a wrong key on one "
                     "side, or not the server meant");
  }
  pb::Hello second;
  second.set_step(2);
  second.set_proof(key->proof(kClientLabel, *client_nonce, h.nonce()));
  reply = helloCall(transport, second, timeout);
  if (!reply) return reply.error();
  if (reply->error() != 0) return serverError(*reply);
  return okResult();
}

}  // namespace zcio::rpc
