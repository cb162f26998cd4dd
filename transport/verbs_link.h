// The verbs half of connectTransport: verbs_connect.cc when the verbs
// transport is built, no_verbs.cc otherwise (internal to transport/).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "rpc/transport.h"
#include "transport/options.h"

namespace zcio::transport::detail {

inline constexpr bool kRdmaBuiltIn = ZCIO_WITH_VERBS;

Result<std::unique_ptr<rpc::Transport>> connectVerbs(const std::string& host, uint16_t port,
                                                     const TransportOptions& options);

}  // namespace zcio::transport::detail
