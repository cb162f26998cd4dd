// VerbsRegistrar: the MemoryRegistrar that calls ibv_reg_mr on one PD.
// RegistrationKeys::handle carries the ibv_mr pointer for deregister.
#pragma once

#include <infiniband/verbs.h>

#include <atomic>

#include "iobuf/memory_registrar.h"

namespace zcio::verbs {

class VerbsRegistrar final : public iobuf::MemoryRegistrar {
 public:
  explicit VerbsRegistrar(ibv_pd* pd) : pd_(pd) {}
  Result<iobuf::RegistrationKeys> registerRange(void* addr, size_t length,
                                                uint32_t access) override;
  Result<void> deregister(const iobuf::RegistrationKeys& keys) override;
  uint64_t registrations() const { return registrations_.load(); }

 private:
  ibv_pd* pd_;
  std::atomic<uint64_t> registrations_{0};
};

int toIbvAccess(uint32_t access);

}  // namespace zcio::verbs
