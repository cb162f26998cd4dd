#include "rpc/request_table.h"

#include <string>

namespace zcio::rpc {
namespace {
constexpr uint64_t kSlotMask = RequestTable::kMaxCapacity - 1;
}

RequestTable::RequestTable(uint32_t capacity) {
  if (capacity == 0) capacity = 1;
  if (capacity > kMaxCapacity) capacity = kMaxCapacity;
  slots_.resize(capacity);
  free_.reserve(capacity);
  // Hand out low slots first (pop_back): keeps the working set small.
  for (uint32_t i = capacity; i > 0; --i) free_.push_back(i - 1);
}

Result<PendingRequest*> RequestTable::insert(CallPtr call,
                                             std::chrono::steady_clock::time_point deadline) {
  if (free_.empty()) {
    return makeError(EAGAIN,
                     "request table full (" + std::to_string(capacity()) + " calls in flight)");
  }
  uint32_t index = free_.back();
  free_.pop_back();
  Slot& slot = slots_[index];
  ++slot.generation;
  PendingRequest& e = slot.entry;
  e.xid = (slot.generation << kSlotBits) | index;
  e.call = std::move(call);
  e.deadline = deadline;  // e.result is empty: erase() left it so
  setState(e, CallState::kQueued);
  ++in_use_;
  return &e;
}

XidClass RequestTable::classify(uint64_t xid) const {
  uint64_t index = xid & kSlotMask;
  uint64_t generation = xid >> kSlotBits;
  if (index >= slots_.size() || generation == 0) return XidClass::kNeverIssued;
  const Slot& slot = slots_[index];
  if (generation > slot.generation) return XidClass::kNeverIssued;
  if (generation == slot.generation && slot.entry.state != CallState::kFree) {
    return XidClass::kLive;
  }
  return XidClass::kStale;
}

PendingRequest* RequestTable::find(uint64_t xid) {
  if (classify(xid) != XidClass::kLive) return nullptr;
  return &slots_[xid & kSlotMask].entry;
}

CallState RequestTable::stateOf(uint64_t xid) const {
  if (classify(xid) != XidClass::kLive) return CallState::kFree;
  return slots_[xid & kSlotMask].entry.state;
}

void RequestTable::erase(PendingRequest* entry) {
  uint32_t index = static_cast<uint32_t>(entry->xid & kSlotMask);
  if (entry->call) entry->call->state.store(CallState::kDone, std::memory_order_relaxed);
  entry->state = CallState::kFree;
  entry->call.reset();
  entry->result.reset();
  free_.push_back(index);
  --in_use_;
}

}  // namespace zcio::rpc
