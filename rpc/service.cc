#include "rpc/service.h"

namespace zcio::rpc {

OutgoingReply errorReply(int code, const std::string& message) {
  OutgoingReply reply;
  reply.header.set_error(code);
  if (message.size() <= kMaxErrorMessage) {
    reply.header.set_message(message);
  } else {
    // Messages may quote what the peer sent (a path of any length): cut, so
    // the reply header always fits the frame limit.
    static constexpr char kMarker[] = "... (truncated)";
    std::string cut = message.substr(0, kMaxErrorMessage - (sizeof kMarker - 1));
    // Never end inside a UTF-8 sequence: proto3 strings must be valid UTF-8.
    while (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0xC0) == 0x80) cut.pop_back();
    if (!cut.empty() && (static_cast<unsigned char>(cut.back()) & 0x80) != 0) cut.pop_back();
    reply.header.set_message(cut + kMarker);
  }
  return reply;
}

}  // namespace zcio::rpc
