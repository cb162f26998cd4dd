// Connection parameters each side announces in rdma_cm private data (as
// RFC 8797 does for RPC-over-RDMA), and the rule that combines them.
//
// Wire layout (little endian): version u16, credits u16, max_message u32,
// max_segments u32, inline_threshold u32, then features u32 (added later in
// version 1). A peer that sends only the first 16 bytes announces no
// features: rdma_cm delivers private data zero-padded, and a shorter block
// decodes with features 0, so old and new peers still connect.
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
  uint32_t features = kFeatureRemoteInvalidate;  // kFeature* bits this side supports
  // Client: it exposes user memory through memory windows and asks, per call
  // (Call.remote_invalidate), for the reply as SEND_WITH_INV of one of them.
  // Server: it can answer that way.
  static constexpr uint32_t kFeatureRemoteInvalidate = 1u << 0;
};

inline constexpr size_t kParamsMinWireSize = 16;  // without features
inline constexpr size_t kParamsWireSize = 20;

void encodeParams(const ConnectionParams& params, uint8_t* out);
// Validates version and ranges; a peer that sends nonsense is refused.
Result<ConnectionParams> decodeParams(const void* data, size_t length);
// What both sides can do: the minimum of each field.
ConnectionParams negotiate(const ConnectionParams& mine, const ConnectionParams& theirs);

}  // namespace zcio::verbs
