// A zcio frame carried in one RDMA SEND: the same 32-byte preamble and
// protobuf header as on TCP, then any inline payload. Bulk payloads never
// ride here; they move by RDMA WRITE/READ through chunk segments.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "base/result.h"
#include "rpc/frame.h"

namespace zcio::verbs {

struct Message {
  rpc::Preamble preamble;
  std::span<const std::byte> header;
  std::span<const std::byte> payload;  // inline payload
};

// Writes preamble + header + inline payload into `out`; returns the length,
// or EMSGSIZE when it does not fit.
Result<size_t> encodeMessage(std::span<std::byte> out, rpc::FrameType type, uint64_t xid,
                             const std::string& header, std::span<const std::byte> payload);
// Writes preamble + header only, announcing `payload_length` bytes that the
// caller gathers from registered memory in the same SEND.
Result<size_t> encodeHeader(std::span<std::byte> out, rpc::FrameType type, uint64_t xid,
                            const std::string& header, uint64_t payload_length);
// Checks every length against the bytes actually received.
Result<Message> decodeMessage(std::span<const std::byte> in);

}  // namespace zcio::verbs
