// Splits a transfer between local pool slices and remote segments into RDMA
// work requests: each request covers one contiguous remote range and at most
// `max_sge` local pieces.
#pragma once

#include <infiniband/verbs.h>

#include <functional>
#include <span>
#include <vector>

#include "base/result.h"
#include "iobuf/iobuf_vector.h"
#include "verbs/rc_connection.h"

namespace zcio::verbs {

using TransferStep = std::function<Result<void>(std::span<const ibv_sge>, const RemoteSegment&)>;

// Moves min(local, remote) bytes in requests of at most `max_bytes`;
// returns how many work requests it made.
Result<size_t> planTransfer(const iobuf::IoBufVector& local, std::span<const RemoteSegment> remote,
                            size_t max_sge, const TransferStep& step,
                            uint64_t max_bytes = UINT32_MAX);

}  // namespace zcio::verbs
