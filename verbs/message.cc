#include "verbs/message.h"

#include <cstring>

namespace zcio::verbs {

Result<size_t> encodeMessage(std::span<std::byte> out, rpc::FrameType type, uint64_t xid,
                             const std::string& header, std::span<const std::byte> payload) {
  size_t total = rpc::kPreambleSize + header.size() + payload.size();
  if (total > out.size()) {
    return makeError(EMSGSIZE, "message of " + std::to_string(total) + " bytes exceeds the " +
                                   std::to_string(out.size()) + "-byte buffer");
  }
  auto head = encodeHeader(out, type, xid, header, payload.size());
  if (!head) return head.error();
  if (!payload.empty()) std::memcpy(out.data() + *head, payload.data(), payload.size());
  return total;
}

Result<size_t> encodeHeader(std::span<std::byte> out, rpc::FrameType type, uint64_t xid,
                            const std::string& header, uint64_t payload_length) {
  size_t total = rpc::kPreambleSize + header.size();
  if (total > out.size()) return makeError(EMSGSIZE, "header does not fit the send buffer");
  rpc::Preamble p;
  p.type = type;
  p.header_length = static_cast<uint32_t>(header.size());
  p.xid = xid;
  p.payload_length = payload_length;
  auto bytes = rpc::encodePreamble(p);
  std::memcpy(out.data(), bytes.data(), bytes.size());
  std::memcpy(out.data() + rpc::kPreambleSize, header.data(), header.size());
  return total;
}

Result<Message> decodeMessage(std::span<const std::byte> in) {
  if (in.size() < rpc::kPreambleSize) {
    return makeError(
        EPROTO, "message of " + std::to_string(in.size()) + " bytes is shorter than a preamble");
  }
  rpc::PreambleBytes bytes;
  std::memcpy(bytes.data(), in.data(), bytes.size());
  auto p = rpc::decodePreamble(bytes);
  if (!p) return p.error();
  uint64_t rest = in.size() - rpc::kPreambleSize;
  if (p->header_length > rest || p->payload_length != rest - p->header_length) {
    return makeError(EPROTO, "message lengths (header " + std::to_string(p->header_length) +
                                 ", payload " + std::to_string(p->payload_length) +
                                 ") disagree with the " + std::to_string(in.size()) +
                                 " bytes received");
  }
  Message m;
  m.preamble = *p;
  m.header = in.subspan(rpc::kPreambleSize, p->header_length);
  m.payload = in.subspan(rpc::kPreambleSize + p->header_length);
  return m;
}

}  // namespace zcio::verbs
