// A per-export shared secret and the HMAC-SHA256 proofs made with it (the
// HELLO handshake, docs/PROTOCOL.md "Authentication"). The key is read from
// a file that only its owner may read; it never crosses the wire.
#pragma once

#include <string>
#include <string_view>

#include "base/result.h"

namespace zcio::rpc {

inline constexpr size_t kNonceSize = 32;
inline constexpr size_t kMinKeySize = 16;
inline constexpr std::string_view kServerLabel = "zcio-v1 server";
inline constexpr std::string_view kClientLabel = "zcio-v1 client";

class SharedKey {
 public:
  // The file's bytes, trailing whitespace trimmed (so `head -c 32 /dev/urandom
  // | base64 > key` works). Refused unless it is a regular file owned by the
  // caller (or root) that neither group nor others may read or write, and it
  // holds at least kMinKeySize bytes.
  static Result<SharedKey> load(const std::string& path);
  static SharedKey fromBytes(std::string bytes) { return SharedKey(std::move(bytes)); }

  // HMAC-SHA256(key, label | client_nonce | server_nonce). The labels differ
  // per side, so one side's proof can never be replayed as the other's.
  std::string proof(std::string_view label, std::string_view client_nonce,
                    std::string_view server_nonce) const;

 private:
  explicit SharedKey(std::string bytes) : bytes_(std::move(bytes)) {}
  std::string bytes_;
};

Result<std::string> randomNonce();
// Compares without an early exit, so timing says nothing about where a guess differs.
bool equalInConstantTime(std::string_view a, std::string_view b);

}  // namespace zcio::rpc
