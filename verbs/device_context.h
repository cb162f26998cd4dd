// DeviceContext: the verbs resources of one RDMA device in this process,
// shared by every connection on that device, client and server alike.
//
// What it owns, and why one per device:
//  - the protection domain: every MR, window and QP of its connections is
//    created on it, so a registration made for one connection serves all;
//  - the registrar and the registration caches over it. A page can be
//    watched by one userfaultfd only (iobuf/unmap_monitor.h), so with a cache
//    per connection the second connection could not cache memory the first
//    had cached and registered it on every call (issue 12). One monitored
//    cache per device (one monitor thread and one consumer thread with it)
//    lifts that;
//  - the client's registered payload pool (regular reads, staged writes);
//  - the device's answers to the capability probes (type-2 windows, the
//    remote-invalidate completion flag), asked once.
// Per connection stay what is bound through a QP: the QP, its CQ and
// buffers, and the memory windows (bound on that QP's send queue).
//
// Which device: rdma_cm gives each cm id the ibv_context of the device its
// address resolved to (id->verbs). librdmacm opens each device once per
// process, keyed by its GUID, and keeps that context open (cma.c:
// ucma_init_device), so every id on a device carries the same pointer; a PD
// is bound to one ibv_context, so that pointer is the registry's key. Call
// forDevice() after rdma_resolve_addr (client) or rdma_bind_addr (server).
//
// Two caches, because the two exposure paths need different ones:
//  - cached(): unmap-monitored, caches user memory across calls. Used with
//    memory windows, whose MRs grant no remote access (LOCAL_WRITE |
//    MW_BIND), so sharing them between connections widens nothing.
//  - perCall(): no monitor, caches only pins. The fallback path registers
//    each segment with remote access for one call; caching those MRs would
//    leave an rkey usable past the call (DESIGN invariant 3).
// Each is created on first use.
//
// Lifetime: connections (and servers) hold a shared_ptr; the context is
// created on first use and destroyed when its last holder lets go. Holders
// declare it before their QPs, windows and registration references so that
// those die first. The payload pool may outlive it (a caller still holding
// a reply's buffers): its slabs are deregistered here and its buffers then
// carry no keys.
//
// Thread-safety: all member functions are thread-safe. The caches and the
// pool are thread-safe themselves (a cache hit takes no lock; see
// iobuf/registration_cache.h); lazy creation takes this context's mutex once.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "base/result.h"
#include "iobuf/buffer_pool.h"
#include "iobuf/registration_cache.h"
#include "verbs/owners.h"
#include "verbs/registrar.h"

namespace zcio::verbs {

class DeviceContext {
 public:
  // The context of `verbs`'s device: the live one if any holder has it,
  // else a new one (allocates the PD, probes the device). Thread-safe.
  static Result<std::shared_ptr<DeviceContext>> forDevice(ibv_context* verbs);
  // Contexts alive in this process (tests).
  static size_t liveCount();

  ~DeviceContext();
  DeviceContext(const DeviceContext&) = delete;
  DeviceContext& operator=(const DeviceContext&) = delete;

  ibv_context* verbs() const { return verbs_; }
  ibv_pd* pd() const { return pd_.get(); }
  VerbsRegistrar& registrar() { return *registrar_; }
  // Memory registered on this device so far, by every connection.
  uint64_t registrations() const { return registrar_->registrations(); }
  const std::string& name() const { return name_; }
  uint64_t guid() const { return guid_; }  // network byte order, as libibverbs gives it

  // Empty when the device offers type-2 memory windows, else why not.
  const std::string& windowsUnavailable() const { return windows_unavailable_; }
  // See remoteInvalidateFlags() in verbs/memory_windows.h.
  uint32_t remoteInvalidateFlags() const { return invalidate_flags_; }

  // The unmap-monitored cache (memory windows' path), created on first use.
  iobuf::RegistrationCache& cached();
  // The cache that keeps pins only (per-call registration path).
  iobuf::RegistrationCache& perCall();
  // The client payload pool, registered LOCAL_WRITE | REMOTE_WRITE |
  // REMOTE_READ once, on first use.
  Result<std::shared_ptr<iobuf::BufferPool>> clientPool();
  // A server's reply pool (the service's), registered LOCAL_WRITE on this
  // device on the first hold and deregistered when the last holder releases
  // it: several servers of one process on the device (zcio-server with two
  // rdma:// listeners) share it. A pool registered elsewhere (another
  // device) gives EBUSY: a pool's slabs carry one set of keys.
  Result<void> holdServerPool(const std::shared_ptr<iobuf::BufferPool>& pool);
  void releaseServerPool(const iobuf::BufferPool* pool);

  explicit DeviceContext(ibv_context* verbs);  // use forDevice()

 private:
  Result<void> open();

  ibv_context* verbs_;
  std::string name_;
  uint64_t guid_ = 0;
  std::string windows_unavailable_;
  uint32_t invalidate_flags_ = 0;
  bool registered_ = false;  // in the registry (set under its mutex)

  // Teardown runs bottom-up: pools' slabs, caches, registrar, PD.
  ProtectionDomain pd_;
  std::unique_ptr<VerbsRegistrar> registrar_;
  std::mutex mutex_;  // guards lazy creation below
  std::unique_ptr<iobuf::RegistrationCache> cached_;
  std::unique_ptr<iobuf::RegistrationCache> per_call_;
  std::shared_ptr<iobuf::BufferPool> pool_;
  struct HeldPool {
    std::shared_ptr<iobuf::BufferPool> pool;
    size_t holders = 0;
  };
  std::map<const iobuf::BufferPool*, HeldPool> server_pools_;
};

}  // namespace zcio::verbs
