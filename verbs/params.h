// Connection parameters each side announces in rdma_cm private data (as
// RFC 8797 does for RPC-over-RDMA), and the rule that combines them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace zcio::verbs {

struct ConnectionParams {
  static constexpr uint16_t kVersion = 1;
  uint16_t version = kVersion;
  uint16_t credits = 64;             // receives each side keeps posted
  uint32_t max_message = 16 * 1024;  // receive buffer size: preamble + header + inline payload
  uint32_t max_segments = 64;        // chunk segments per call
  uint32_t inline_threshold = 4096;  // payloads up to this ride in the SEND (and are copied)
};

inline constexpr size_t kParamsWireSize = 16;

void encodeParams(const ConnectionParams& params, uint8_t* out);
// Validates version and ranges; a peer that sends nonsense is refused.
Result<ConnectionParams> decodeParams(const void* data, size_t length);
// What both sides can do: the minimum of each field.
ConnectionParams negotiate(const ConnectionParams& mine, const ConnectionParams& theirs);

}  // namespace zcio::verbs
