// The server side of the transport contract: a transport accepts connections,
// decodes call frames, and hands each call to the ServerSession opened for
// that connection; fops' brick implements it. Transports own framing and
// limits; sessions own meaning.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "iobuf/iobuf_vector.h"
#include "rpc/zcio.pb.h"

namespace zcio::rpc {

struct IncomingCall {
  uint64_t xid = 0;
  pb::Call header;
  iobuf::IoBufVector payload;  // WRITE data, in the transport's pool buffers
};

struct OutgoingReply {
  pb::Reply header;
  iobuf::IoBufVector payload;  // READ data
};

// One per connection; used only from that connection's thread. Destroying it
// releases everything the peer opened.
class ServerSession {
 public:
  virtual ~ServerSession() = default;
  // An error result means the peer broke the protocol: the transport logs it
  // and closes the connection. Operation failures are error *replies*.
  virtual Result<OutgoingReply> handle(IncomingCall call) = 0;
};

class Service {
 public:
  virtual ~Service() = default;
  // Thread-safe: called from any transport thread.
  virtual std::unique_ptr<ServerSession> openSession(const std::string& peer) = 0;
};

// Builds an error reply with errno `code` and a reason for the peer. The
// reason is cut to kMaxErrorMessage bytes (ending "... (truncated)"), so an
// error reply's header always fits the frame's header limit.
inline constexpr size_t kMaxErrorMessage = 1024;
OutgoingReply errorReply(int code, const std::string& message);

}  // namespace zcio::rpc
