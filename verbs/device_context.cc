#include "verbs/device_context.h"

#include "base/log.h"
#include "verbs/memory_windows.h"

namespace zcio::verbs {
namespace {

// Weak: the registry never keeps a device's resources alive by itself.
struct Registry {
  std::mutex mutex;
  std::map<ibv_context*, std::weak_ptr<DeviceContext>> contexts;
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: contexts may die during exit
  return *r;
}

}  // namespace

DeviceContext::DeviceContext(ibv_context* verbs) : verbs_(verbs) {}

Result<std::shared_ptr<DeviceContext>> DeviceContext::forDevice(ibv_context* verbs) {
  if (verbs == nullptr) return makeError(ENODEV, "no RDMA device behind this address");
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  auto& slot = r.contexts[verbs];
  if (auto live = slot.lock()) return live;
  auto context = std::make_shared<DeviceContext>(verbs);
  if (auto opened = context->open(); !opened) {
    r.contexts.erase(verbs);
    return opened.error();
  }
  slot = context;
  context->registered_ = true;
  return context;
}

size_t DeviceContext::liveCount() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  size_t n = 0;
  for (const auto& [verbs, weak] : r.contexts) n += weak.expired() ? 0 : 1;
  return n;
}

Result<void> DeviceContext::open() {
  name_ = ibv_get_device_name(verbs_->device);
  guid_ = ibv_get_device_guid(verbs_->device);
  // Our own PD, not librdmacm's per-device one (id->pd): that one is freed
  // with the device's last cm id, and cached MRs outlive connections.
  pd_.reset(ibv_alloc_pd(verbs_));
  if (!pd_) return makeError(errno, "ibv_alloc_pd on " + name_);
  registrar_ = std::make_unique<VerbsRegistrar>(pd_.get());
  if (auto mw = supportsType2Windows(verbs_); !mw) windows_unavailable_ = mw.error().what;
  invalidate_flags_ = verbs::remoteInvalidateFlags(verbs_);
  ZCIO_LOG(kDebug, "rdma device ", name_, ": context opened (shared by its connections)");
  return okResult();
}

DeviceContext::~DeviceContext() {
  if (registered_) {
    // Forget our slot unless a new context for the device took it already.
    Registry& r = registry();
    std::lock_guard lock(r.mutex);
    auto it = r.contexts.find(verbs_);
    if (it != r.contexts.end() && it->second.expired()) r.contexts.erase(it);
  }
  // Pool buffers may outlive us (a caller still holding a reply); their MRs
  // may not outlive the PD.
  if (pool_) pool_->deregisterSlabs();
  for (auto& [raw, held] : server_pools_) held.pool->deregisterSlabs();
  cached_.reset();
  per_call_.reset();
}

iobuf::RegistrationCache& DeviceContext::cached() {
  std::lock_guard lock(mutex_);
  if (!cached_) {
    iobuf::RegistrationCache::Options options;
    options.monitor_unmaps = true;  // entries outlive calls: unmaps must be seen (invariant 2)
    cached_ = std::make_unique<iobuf::RegistrationCache>(*registrar_, options);
  }
  return *cached_;
}

iobuf::RegistrationCache& DeviceContext::perCall() {
  std::lock_guard lock(mutex_);
  if (!per_call_) {
    iobuf::RegistrationCache::Options options;
    options.monitor_unmaps = false;  // only pins are cached
    per_call_ = std::make_unique<iobuf::RegistrationCache>(*registrar_, options);
  }
  return *per_call_;
}

Result<std::shared_ptr<iobuf::BufferPool>> DeviceContext::clientPool() {
  std::lock_guard lock(mutex_);
  if (!pool_) {
    auto pool = iobuf::BufferPool::create();
    // Library memory registered once: regular reads land in it (REMOTE_WRITE)
    // and staged writes leave from it (REMOTE_READ).
    ZCIO_RETURN_IF_ERROR(pool->registerSlabs(
        *registrar_, iobuf::kLocalWrite | iobuf::kRemoteWrite | iobuf::kRemoteRead));
    pool_ = std::move(pool);
  }
  return pool_;
}

Result<void> DeviceContext::holdServerPool(const std::shared_ptr<iobuf::BufferPool>& pool) {
  std::lock_guard lock(mutex_);
  auto& held = server_pools_[pool.get()];
  if (held.holders == 0) {
    // Reply payloads are RDMA WRITE sources and RDMA READ targets.
    if (auto r = pool->registerSlabs(*registrar_, iobuf::kLocalWrite); !r) {
      server_pools_.erase(pool.get());
      if (r.error().code == EBUSY)
        return makeError(EBUSY, "the server's buffer pool is registered on another device");
      return r.error();
    }
    held.pool = pool;
  }
  ++held.holders;
  return okResult();
}

void DeviceContext::releaseServerPool(const iobuf::BufferPool* pool) {
  std::lock_guard lock(mutex_);
  auto it = server_pools_.find(pool);
  if (it == server_pools_.end() || --it->second.holders > 0) return;
  // The pool outlives us (it is the service's); its MRs must not outlive the PD.
  it->second.pool->deregisterSlabs();
  server_pools_.erase(it);
}

}  // namespace zcio::verbs
