#include "verbs/memory_windows.h"

#include <cerrno>
#include <string>

namespace zcio::verbs {

Result<void> supportsType2Windows(ibv_context* context) {
  ibv_device_attr attr{};
  int rc = ibv_query_device(context, &attr);
  if (rc != 0) return makeError(rc, "ibv_query_device");
  if ((attr.device_cap_flags & IBV_DEVICE_MEM_WINDOW_TYPE_2B) == 0 || attr.max_mw == 0) {
    return makeError(EOPNOTSUPP, std::string(ibv_get_device_name(context->device)) +
                                     " has no type-2B memory windows");
  }
  return okResult();
}

uint32_t remoteInvalidateFlags(ibv_context* context) {
  constexpr uint32_t kKernelWithInvalidate = 1u << 2;  // IB_WC_WITH_INVALIDATE
  constexpr uint32_t kSoftRoceVendor = 0xffffff;
  ibv_device_attr attr{};
  if (ibv_query_device(context, &attr) == 0 && attr.vendor_id == kSoftRoceVendor)
    return IBV_WC_WITH_INV | kKernelWithInvalidate;
  return IBV_WC_WITH_INV;
}

Result<uint32_t> MemoryWindowPool::take(uint64_t owner) {
  uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    MemoryWindow mw(ibv_alloc_mw(pd_, IBV_MW_TYPE_2));
    if (!mw) return makeError(errno, "ibv_alloc_mw (type 2)");
    index = static_cast<uint32_t>(windows_.size());
    windows_.push_back(Window{std::move(mw), 0, State::kFree, 0});
    windows_.back().rkey = windows_.back().mw->rkey;
    windows_.back().bind_work.index = index;
    windows_.back().invalidate_work.index = index;
  }
  Window& w = windows_[index];
  w.state = State::kReserved;
  w.owner = owner;
  return index;
}

uint32_t MemoryWindowPool::nextRkey(uint32_t index) const {
  return ibv_inc_rkey(windows_[index].rkey);
}

void MemoryWindowPool::bound(uint32_t index, uint32_t rkey) {
  Window& w = windows_[index];
  w.rkey = rkey;
  w.mw->rkey = rkey;
  w.state = State::kBound;
}

void MemoryWindowPool::release(uint32_t index) {
  Window& w = windows_[index];
  if (w.state == State::kDropped || w.state == State::kFree) return;
  w.state = State::kFree;
  w.owner = 0;
  free_.push_back(index);
}

int64_t MemoryWindowPool::findBound(uint32_t rkey) const {
  for (size_t i = 0; i < windows_.size(); ++i) {
    if (windows_[i].state == State::kBound && windows_[i].rkey == rkey)
      return static_cast<int64_t>(i);
  }
  return -1;
}

void MemoryWindowPool::dropAll() {
  for (Window& w : windows_) {
    if (w.state == State::kFree || w.state == State::kDropped) continue;
    w.mw.reset();  // ibv_dealloc_mw unbinds it from its MR
    w.state = State::kDropped;
  }
}

}  // namespace zcio::verbs
