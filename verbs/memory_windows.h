// MemoryWindowPool: the type-2 memory windows of one connection.
//
// User memory is registered once (cached, LOCAL_WRITE | MW_BIND, no remote
// access) and exposed to the peer per call through a window bound, on this
// connection's QP, to exactly one segment with exactly the access the call
// needs (DESIGN invariant 3). A window goes back to the pool only once it is
// invalid again: remotely (the reply came as SEND_WITH_INV of its rkey) or by
// a completed LOCAL_INV. Every bind gives it a fresh rkey (ibv_inc_rkey), so
// an rkey from an earlier call never names a later binding.
//
// A window's life: kFree -> take() -> kReserved -> (bind posted) kBound ->
//   remote invalidation: kInvalidated -> release() -> kFree
//   LOCAL_INV posted:    kInvalidating -> (completed) release() -> kFree
// Once the QP is in error, dropAll() deallocates every window that is not
// free: that unbinds them, so the registrations under them can be released
// (rxe refuses ibv_dereg_mr of an MR with windows bound to it).
//
// Thread-safety: none; one connection thread.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <deque>
#include <vector>

#include "base/result.h"
#include "verbs/owners.h"
#include "verbs/rc_connection.h"

namespace zcio::verbs {

// Whether `context`'s device offers type-2 memory windows (binds posted on
// the send queue, local and remote invalidation); the reason when not.
Result<void> supportsType2Windows(ibv_context* context);

// The ibv_wc::wc_flags bits that mean "this receive invalidated
// ibv_wc::invalidated_rkey". libibverbs names it IBV_WC_WITH_INV (1 << 3),
// but the kernel's IB_WC_WITH_INVALIDATE is 1 << 2, and rxe's provider
// copies the kernel's completion unchanged (seen on kernel 6.1 + rdma-core
// 44: the flag arrives as bit 2, which libibverbs calls IBV_WC_IP_CSUM_OK).
// Missing it would make us invalidate a window twice, which rxe 6.1 turns
// into a kernel NULL dereference; so for rxe (vendor 0xffffff) both bits.
uint32_t remoteInvalidateFlags(ibv_context* context);

class MemoryWindowPool {
 public:
  enum class State : uint8_t { kFree, kReserved, kBound, kInvalidating, kInvalidated, kDropped };
  struct Window {
    MemoryWindow mw;
    uint32_t rkey = 0;  // of the current binding (or the last one)
    State state = State::kFree;
    uint64_t owner = 0;  // xid of the call it serves
    // The wr_ids of its BIND_MW and LOCAL_INV (rc_connection.h's workOf).
    WorkContext bind_work{WorkKind::kBind};
    WorkContext invalidate_work{WorkKind::kInvalidate};
  };

  explicit MemoryWindowPool(ibv_pd* pd) : pd_(pd) {}

  // A free window, allocated on first need; kReserved for `owner`.
  Result<uint32_t> take(uint64_t owner);
  // The rkey the next bind of window `index` gives it.
  uint32_t nextRkey(uint32_t index) const;
  // The bind carrying `rkey` was posted: the provider names the window to
  // the kernel by ibv_mw::rkey, so it must follow every binding.
  void bound(uint32_t index, uint32_t rkey);
  // Back to the free list (never bound, or invalid again).
  void release(uint32_t index);
  // The window whose live binding has `rkey` (kBound), or -1.
  int64_t findBound(uint32_t rkey) const;
  Window& at(uint32_t index) { return windows_[index]; }
  size_t allocated() const { return windows_.size(); }
  // The QP is in error: unbind (deallocate) every window in use.
  void dropAll();

 private:
  ibv_pd* pd_;
  std::deque<Window> windows_;  // grows; a window (its WorkContexts) never moves
  std::vector<uint32_t> free_;
};

}  // namespace zcio::verbs
