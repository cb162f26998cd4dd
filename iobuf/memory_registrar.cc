#include "iobuf/memory_registrar.h"

namespace zcio::iobuf {

Result<RegistrationKeys> NullRegistrar::registerRange(void* addr, size_t length, uint32_t) {
  if (addr == nullptr && length != 0) return makeError(EINVAL, "registerRange: null address");
  ++registrations_;
  return RegistrationKeys{};
}

Result<void> NullRegistrar::deregister(const RegistrationKeys&) {
  return okResult();
}

}  // namespace zcio::iobuf
