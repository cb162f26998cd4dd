#include "verbs/registrar.h"

#include <cstring>
#include <string>

namespace zcio::verbs {

int toIbvAccess(uint32_t access) {
  int out = 0;
  // Remote write needs local write too (verbs rule).
  if ((access & (iobuf::kLocalWrite | iobuf::kRemoteWrite)) != 0) out |= IBV_ACCESS_LOCAL_WRITE;
  if ((access & iobuf::kRemoteWrite) != 0) out |= IBV_ACCESS_REMOTE_WRITE;
  if ((access & iobuf::kRemoteRead) != 0) out |= IBV_ACCESS_REMOTE_READ;
  if ((access & iobuf::kMwBind) != 0) out |= IBV_ACCESS_MW_BIND;
  return out;
}

Result<iobuf::RegistrationKeys> VerbsRegistrar::registerRange(void* addr, size_t length,
                                                              uint32_t access) {
  ibv_mr* mr = ibv_reg_mr(pd_, addr, length, toIbvAccess(access));
  if (mr == nullptr) {
    return makeError(errno, "ibv_reg_mr of " + std::to_string(length) + " bytes");
  }
  registrations_.fetch_add(1, std::memory_order_relaxed);
  return iobuf::RegistrationKeys{mr->lkey, mr->rkey, reinterpret_cast<uint64_t>(mr)};
}

Result<void> VerbsRegistrar::deregister(const iobuf::RegistrationKeys& keys) {
  auto* mr = reinterpret_cast<ibv_mr*>(keys.handle);
  if (mr == nullptr) return okResult();
  int rc = ibv_dereg_mr(mr);  // returns the errno value
  if (rc != 0) return makeError(rc, "ibv_dereg_mr");
  return okResult();
}

}  // namespace zcio::verbs
