// Call: one RPC as the layers above a transport describe it, and the reply
// they get back. Transport-neutral: TCP and verbs take the same Call.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/result.h"
#include "iobuf/iobuf_vector.h"
#include "rpc/call_state.h"
#include "rpc/zcio.pb.h"

namespace zcio::rpc {

struct ReplyData {
  pb::Reply header;
  // Regular reads: the payload, in pool buffers the caller copies from.
  // Direct reads: empty; the bytes are already in the caller's iov.
  iobuf::IoBufVector payload;
  uint64_t payload_length = 0;
};

// Runs once, on the transport's thread; must not block.
using Completion = std::function<void(Result<ReplyData>)>;

struct Call {
  pb::Call header;
  // Write payload, gathered from wherever it lives (user memory: no copy).
  // The memory must stay valid until `done` has run.
  iobuf::IoBufVector payload;

  // Where the reply payload goes. direct: straight into `destination` (user
  // memory, valid until `done` has run); otherwise into pool buffers handed to
  // `done`. A reply payload larger than `reply_capacity` is drained and failed.
  bool direct = false;
  std::vector<iovec> destination;
  uint64_t reply_capacity = 0;

  std::chrono::steady_clock::duration timeout = std::chrono::seconds(60);
  Completion done;

  // Set by the transport when the call enters its request table (transport
  // thread only); lets cancel() find it.
  uint64_t xid = 0;
  // Where the call is in its life (rpc/call_state.h), written by its
  // transport's request table; readable from any thread.
  std::atomic<CallState> state{CallState::kFree};
};

using CallPtr = std::shared_ptr<Call>;

}  // namespace zcio::rpc
