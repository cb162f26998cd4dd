#include "rpc/frame.h"

#include <string>

namespace zcio::rpc {
namespace {

template <typename T>
void putLe(std::byte* out, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) {
    out[i] = static_cast<std::byte>((static_cast<uint64_t>(value) >> (8 * i)) & 0xff);
  }
}

template <typename T>
T getLe(const std::byte* in) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<uint64_t>(in[i]) << (8 * i);
  return static_cast<T>(v);
}

// Byte offsets inside the preamble.
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffType = 5;
constexpr size_t kOffFlags = 6;
constexpr size_t kOffHeaderLength = 8;
constexpr size_t kOffReserved = 12;
constexpr size_t kOffXid = 16;
constexpr size_t kOffPayloadLength = 24;

}  // namespace

PreambleBytes encodePreamble(const Preamble& p) {
  PreambleBytes b{};
  putLe<uint32_t>(&b[kOffMagic], kMagic);
  putLe<uint8_t>(&b[kOffVersion], kVersion);
  putLe<uint8_t>(&b[kOffType], static_cast<uint8_t>(p.type));
  putLe<uint16_t>(&b[kOffFlags], p.flags);
  putLe<uint32_t>(&b[kOffHeaderLength], p.header_length);
  putLe<uint32_t>(&b[kOffReserved], 0);
  putLe<uint64_t>(&b[kOffXid], p.xid);
  putLe<uint64_t>(&b[kOffPayloadLength], p.payload_length);
  return b;
}

Result<Preamble> decodePreamble(const PreambleBytes& b, uint64_t max_payload) {
  if (getLe<uint32_t>(&b[kOffMagic]) != kMagic) {
    return makeError(EPROTO, "frame: bad magic (not a zcio peer, or stream out of sync)");
  }
  uint8_t version = getLe<uint8_t>(&b[kOffVersion]);
  if (version != kVersion) {
    return makeError(EPROTONOSUPPORT, "frame: unsupported version " + std::to_string(version));
  }
  uint8_t type = getLe<uint8_t>(&b[kOffType]);
  if (type != static_cast<uint8_t>(FrameType::kCall) &&
      type != static_cast<uint8_t>(FrameType::kReply)) {
    return makeError(EPROTO, "frame: unknown message type " + std::to_string(type));
  }
  Preamble p;
  p.type = static_cast<FrameType>(type);
  p.flags = getLe<uint16_t>(&b[kOffFlags]);
  if (p.flags != 0) return makeError(EPROTO, "frame: unknown flags set");
  if (getLe<uint32_t>(&b[kOffReserved]) != 0) {
    return makeError(EPROTO, "frame: reserved field not zero");
  }
  p.header_length = getLe<uint32_t>(&b[kOffHeaderLength]);
  if (p.header_length > kMaxHeaderLength) {
    return makeError(EMSGSIZE, "frame: header length " + std::to_string(p.header_length) +
                                   " exceeds limit " + std::to_string(kMaxHeaderLength));
  }
  p.xid = getLe<uint64_t>(&b[kOffXid]);
  p.payload_length = getLe<uint64_t>(&b[kOffPayloadLength]);
  if (p.payload_length > max_payload) {
    return makeError(EMSGSIZE, "frame: payload length " + std::to_string(p.payload_length) +
                                   " exceeds limit " + std::to_string(max_payload));
  }
  return p;
}

}  // namespace zcio::rpc
