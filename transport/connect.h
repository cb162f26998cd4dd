// transport/: the only layer that names both tcp/ and verbs/, so that fops/
// and tools pick a transport by URL scheme without including either (and
// build without RDMA: ZCIO_WITH_VERBS=OFF).
//
//   auto t = transport::connectTransport("tcp", "127.0.0.1", 7700, {});
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "rpc/transport.h"
#include "transport/options.h"

namespace zcio::transport {

// scheme: "tcp"; "rdma" (fails if RDMA is not viable); "auto" (RDMA when a
// device and route exist, else TCP). Without RDMA built in, "rdma" fails with
// EPROTONOSUPPORT and "auto" uses TCP. The transport is connected but not
// authenticated (rpc/auth_client.h).
Result<std::unique_ptr<rpc::Transport>> connectTransport(std::string_view scheme,
                                                         const std::string& host, uint16_t port,
                                                         const TransportOptions& options = {});

// Whether this build has the verbs transport (ZCIO_WITH_VERBS).
bool rdmaBuiltIn();

// The error rdma:// gets from a build without the verbs transport.
Error rdmaNotBuiltError();

}  // namespace zcio::transport
