// AuthService: a Service wrapper that serves no call before the peer has
// authenticated with the HELLO handshake (docs/PROTOCOL.md "Authentication").
// With a shared key both sides prove they hold it (HMAC challenge-response,
// the client checks the server too); the no-auth mode must be chosen by name
// and answers HELLO with "none". Transport-neutral: the same frames run over
// TCP and as the first SENDs on verbs.
#pragma once

#include <atomic>
#include <optional>

#include "rpc/service.h"
#include "rpc/shared_key.h"

namespace zcio::rpc {

struct AuthCounters {
  std::atomic<uint64_t> authenticated{0};
  std::atomic<uint64_t> refused{0};
};

class AuthService final : public Service {
 public:
  // No key: the no-auth mode. Every call is served, HELLO or not (old clients).
  AuthService(Service& inner, std::optional<SharedKey> key) : inner_(inner), key_(std::move(key)) {}

  std::unique_ptr<ServerSession> openSession(const std::string& peer) override;
  const AuthCounters& counters() const { return counters_; }
  bool requiresKey() const { return key_.has_value(); }

 private:
  friend class AuthSession;
  Service& inner_;
  std::optional<SharedKey> key_;
  AuthCounters counters_;
};

}  // namespace zcio::rpc
