// RequestTable: where every in-flight call waits for its reply, shared by the
// TCP and verbs transports. A fixed slot array (eRPC's shape): the xid encodes
// slot index and generation, so lookup is O(1) and a stale or forged xid is
// recognised without a search.
//
//   xid = generation << kSlotBits | slot        (generation starts at 1)
//
// Each entry has one explicit state (rpc/call_state.h). kReceiving is the
// pin (Linux NFS's xprt_pin_rqst): while a reply payload is being received
// into the call's destination, cancel and timeout decide the result and move
// the entry to kReleasing; the transport completes it once it has let go of
// the call's memory, so no byte lands in user memory after completion.
//
// Thread-safety: none. A table belongs to one connection and is touched only
// on that connection's thread, so the hot path takes no lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/result.h"
#include "rpc/call.h"

namespace zcio::rpc {

// Transport-neutral: what a transport keeps besides lives in its own
// per-slot arrays, indexed like this table (slotOf).
struct PendingRequest {
  uint64_t xid = 0;
  CallState state = CallState::kFree;  // change it with RequestTable::setState
  CallPtr call;
  // The call's deadline; in kReleasing, when the transport gives up waiting
  // for its memory (the stall limit).
  std::chrono::steady_clock::time_point deadline;
  // kReleasing: what the call completes with once its memory is let go.
  std::optional<Result<ReplyData>> result;
};

enum class XidClass { kLive, kStale, kNeverIssued };

class RequestTable {
 public:
  static constexpr unsigned kSlotBits = 16;
  static constexpr uint32_t kMaxCapacity = 1u << kSlotBits;

  explicit RequestTable(uint32_t capacity = 1024);

  static uint32_t slotOf(uint64_t xid) { return static_cast<uint32_t>(xid & (kMaxCapacity - 1)); }

  // Takes a free slot and assigns its xid (state kQueued); EAGAIN when all
  // are in use.
  Result<PendingRequest*> insert(CallPtr call, std::chrono::steady_clock::time_point deadline);
  // The live entry for `xid`, or nullptr (stale, forged or free).
  PendingRequest* find(uint64_t xid);
  XidClass classify(uint64_t xid) const;
  // kFree for an xid that is not live.
  CallState stateOf(uint64_t xid) const;
  // The one place a call's state changes: also mirrored into the Call.
  static void setState(PendingRequest& entry, CallState state) {
    entry.state = state;
    entry.call->state.store(state, std::memory_order_relaxed);
  }
  // Frees the slot (the Call reads kDone); its next occupant gets a new
  // generation.
  void erase(PendingRequest* entry);
  // The same, handing the call out (to complete it).
  CallPtr take(PendingRequest* entry) {
    CallPtr call = std::move(entry->call);
    call->state.store(CallState::kDone, std::memory_order_relaxed);
    erase(entry);
    return call;
  }

  uint32_t capacity() const { return static_cast<uint32_t>(slots_.size()); }
  uint32_t inUse() const { return in_use_; }

  template <typename F>
  void forEachLive(F&& f) {
    for (auto& s : slots_) {
      if (s.entry.state != CallState::kFree) f(s.entry);
    }
  }

 private:
  struct Slot {
    uint64_t generation = 0;  // of the current or last occupant
    PendingRequest entry;
  };
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_;
  uint32_t in_use_ = 0;
};

}  // namespace zcio::rpc
