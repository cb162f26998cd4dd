// CallState: the one answer to "what state is call X in", for every
// transport. The request table holds it per slot (authoritative, transport
// thread only) and mirrors it into the Call, where any thread may read it
// (tests, describe, a stuck-call report).
//
// What a transport keeps per slot besides (TCP: the frame on the wire;
// verbs: windows and their pending LOCAL_INVs) says *why* a call is in its
// state, never *which* state it is in.
#pragma once

#include <cstdint>

namespace zcio::rpc {

enum class CallState : uint8_t {
  kFree,  // no call (a slot's state between calls; a Call not yet submitted)
  // In the table, its memory untouched so far: waiting for the wire (TCP:
  // behind the write in progress) or for a credit (verbs: the backlog).
  // Cancel and timeout complete it at once.
  kQueued,
  // Its frame or payload is being written from the caller's memory (TCP).
  kSending,
  // Sent; waiting for the reply. Verbs: its memory stays exposed through
  // windows until the reply or a LOCAL_INV closes them.
  kAwaitingReply,
  // Pinned: the reply payload is landing in the destination (TCP). Cancel
  // and timeout take effect at the next piece boundary.
  kReceiving,
  // The result is decided (reply, error, cancel, timeout) and held until the
  // transport lets go of the call's memory: a TCP write still on the wire or
  // a receive reaching its piece boundary, verbs LOCAL_INVs still pending.
  kReleasing,
  kDone,  // completed: `done` has run or is running; the slot is free again
};

constexpr const char* callStateName(CallState s) {
  switch (s) {
    case CallState::kFree:
      return "free";
    case CallState::kQueued:
      return "queued";
    case CallState::kSending:
      return "sending";
    case CallState::kAwaitingReply:
      return "awaiting reply";
    case CallState::kReceiving:
      return "receiving";
    case CallState::kReleasing:
      return "releasing";
    case CallState::kDone:
      return "done";
  }
  return "?";
}

}  // namespace zcio::rpc
