// The zcio frame: a fixed 32-byte little-endian preamble, a protobuf header
// (Call or Reply), then the payload (TCP only). The xid and both lengths sit in
// the fixed part, so a reader knows where a reply's payload goes, and how big
// everything is, before decoding anything else. See docs/PROTOCOL.md.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace zcio::rpc {

inline constexpr uint32_t kMagic = 0x4f49435a;  // "ZCIO" as LE bytes
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kPreambleSize = 32;

// Limits checked before anything is allocated.
inline constexpr uint32_t kMaxHeaderLength = 64 * 1024;
inline constexpr uint64_t kMaxPayloadLength = 64ull * 1024 * 1024;

enum class FrameType : uint8_t { kCall = 1, kReply = 2 };

struct Preamble {
  FrameType type = FrameType::kCall;
  uint16_t flags = 0;  // none defined yet; must be zero
  uint32_t header_length = 0;
  uint64_t xid = 0;
  uint64_t payload_length = 0;
};

using PreambleBytes = std::array<std::byte, kPreambleSize>;

PreambleBytes encodePreamble(const Preamble& preamble);

// Validates magic, version, type, flags and every length against the limits
// (and against `max_payload`, which a receiver may lower). An error here means
// the stream is unusable: the caller logs it and closes the connection.
Result<Preamble> decodePreamble(const PreambleBytes& bytes,
                                uint64_t max_payload = kMaxPayloadLength);

}  // namespace zcio::rpc
