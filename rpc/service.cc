#include "rpc/service.h"

namespace zcio::rpc {

OutgoingReply errorReply(int code, const std::string& message) {
  OutgoingReply reply;
  reply.header.set_error(code);
  reply.header.set_message(message);
  return reply;
}

}  // namespace zcio::rpc
