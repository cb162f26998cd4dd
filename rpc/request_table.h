// RequestTable: where every in-flight call waits for its reply, shared by the
// TCP and verbs transports. A fixed slot array (eRPC's shape): the xid encodes
// slot index and generation, so lookup is O(1) and a stale or forged xid is
// recognised without a search.
//
//   xid = generation << kSlotBits | slot        (generation starts at 1)
//
// Each entry has an explicit state. kReceiving is the pin (Linux NFS's
// xprt_pin_rqst): while a reply payload is being received into the call's
// destination, cancel and timeout only mark the entry `abandoned`; the
// transport completes it at the next safe point, so no byte lands in user
// memory after completion.
//
// Thread-safety: none. A table belongs to one connection and is touched only
// on that connection's thread, so the hot path takes no lock.
#pragma once

#include <chrono>
#include <cstdint>
#include <vector>

#include "base/result.h"
#include "rpc/call.h"

namespace zcio::rpc {

enum class RequestState : uint8_t {
  kFree,
  kInFlight,   // sent or being sent; waiting for the reply
  kReceiving,  // pinned: reply payload being received into the destination
};

struct PendingRequest {
  uint64_t xid = 0;
  RequestState state = RequestState::kFree;
  CallPtr call;
  std::chrono::steady_clock::time_point deadline;
  // The call's frame (and its payload memory) is still queued or being
  // written; completion waits until the transport has let go of it.
  bool sending = false;
  // Cancel or timeout arrived while the entry was pinned or sending; the
  // error completes the call once the transport lets go of its memory.
  bool abandoned = false;
  Error abandon_error;
};

enum class XidClass { kLive, kStale, kNeverIssued };

class RequestTable {
 public:
  static constexpr unsigned kSlotBits = 16;
  static constexpr uint32_t kMaxCapacity = 1u << kSlotBits;

  explicit RequestTable(uint32_t capacity = 1024);

  // Takes a free slot and assigns its xid; EAGAIN when all are in use.
  Result<PendingRequest*> insert(CallPtr call, std::chrono::steady_clock::time_point deadline);
  // The live entry for `xid`, or nullptr (stale, forged or free).
  PendingRequest* find(uint64_t xid);
  XidClass classify(uint64_t xid) const;
  // Frees the slot; its next occupant gets a new generation.
  void erase(PendingRequest* entry);

  uint32_t capacity() const { return static_cast<uint32_t>(slots_.size()); }
  uint32_t inUse() const { return in_use_; }

  template <typename F>
  void forEachLive(F&& f) {
    for (auto& s : slots_) {
      if (s.entry.state != RequestState::kFree) f(s.entry);
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
