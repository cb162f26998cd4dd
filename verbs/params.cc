#include "verbs/params.h"

#include <algorithm>
#include <cstring>
#include <string>

namespace zcio::verbs {
namespace {
void put16(uint8_t* p, uint16_t v) {
  p[0] = v & 0xff;
  p[1] = v >> 8;
}
void put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = (v >> (8 * i)) & 0xff;
}
uint16_t get16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}
uint32_t get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
}  // namespace

void encodeParams(const ConnectionParams& params, uint8_t* out) {
  put16(out, params.version);
  put16(out + 2, params.credits);
  put32(out + 4, params.max_message);
  put32(out + 8, params.max_segments);
  put32(out + 12, params.inline_threshold);
  put32(out + 16, params.features);
}

Result<ConnectionParams> decodeParams(const void* data, size_t length) {
  if (data == nullptr || length < kParamsMinWireSize) {
    return makeError(EPROTO, "rdma_cm private data too short for zcio parameters (" +
                                 std::to_string(length) + " bytes)");
  }
  const auto* p = static_cast<const uint8_t*>(data);
  ConnectionParams out;
  out.version = get16(p);
  out.credits = get16(p + 2);
  out.max_message = get32(p + 4);
  out.max_segments = get32(p + 8);
  out.inline_threshold = get32(p + 12);
  out.features = length >= kParamsWireSize ? get32(p + 16) : 0;
  if (out.version != ConnectionParams::kVersion) {
    return makeError(EPROTONOSUPPORT,
                     "peer speaks zcio-over-RDMA version " + std::to_string(out.version));
  }
  if (out.credits == 0 || out.max_message < 1024 || out.max_message > (1u << 20) ||
      out.max_segments == 0 || out.max_segments > 1024 || out.inline_threshold > out.max_message) {
    return makeError(EPROTO, "peer announced out-of-range connection parameters");
  }
  return out;
}

ConnectionParams negotiate(const ConnectionParams& mine, const ConnectionParams& theirs) {
  ConnectionParams out;
  out.credits = std::min(mine.credits, theirs.credits);
  out.max_message = std::min(mine.max_message, theirs.max_message);
  out.max_segments = std::min(mine.max_segments, theirs.max_segments);
  out.inline_threshold = std::min(mine.inline_threshold, theirs.inline_threshold);
  out.features = mine.features & theirs.features;
  return out;
}

}  // namespace zcio::verbs
