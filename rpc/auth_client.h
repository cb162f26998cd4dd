// The client's half of the HELLO handshake (docs/PROTOCOL.md
// "Authentication"), run once on a fresh connection before any other call.
// With a key the server must prove it holds the same key before the client
// proves it; without one, only a no-auth server (or an older server that has
// no HELLO) is accepted.
#pragma once

#include <chrono>

#include "rpc/shared_key.h"
#include "rpc/transport.h"

namespace zcio::rpc {

Result<void> authenticate(Transport& transport, const SharedKey* key,
                          std::chrono::milliseconds timeout);

}  // namespace zcio::rpc
