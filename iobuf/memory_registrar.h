// MemoryRegistrar: registers a range of memory with a transport so a remote
// peer (or the NIC) may access it, and returns the keys. TCP needs no
// registration and uses NullRegistrar; verbs/ provides the ibv_reg_mr one and
// the registration cache sits in front of it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"
#include "iobuf/iobuf.h"

namespace zcio::iobuf {

// Access a registration grants. Read buffers are exposed kRemoteWrite only,
// write buffers kRemoteRead only (DESIGN invariant 3).
enum Access : uint32_t {
  kLocalWrite = 1u << 0,
  kRemoteWrite = 1u << 1,
  kRemoteRead = 1u << 2,
  // May carry memory windows (verbs): the peer then gets a window's rkey,
  // never the registration's own.
  kMwBind = 1u << 3,
};

class MemoryRegistrar {
 public:
  virtual ~MemoryRegistrar() = default;
  virtual Result<RegistrationKeys> registerRange(void* addr, size_t length, uint32_t access) = 0;
  virtual Result<void> deregister(const RegistrationKeys& keys) = 0;
};

// For transports that need no registration: hands out zero keys, counts calls.
class NullRegistrar final : public MemoryRegistrar {
 public:
  Result<RegistrationKeys> registerRange(void* addr, size_t length, uint32_t access) override;
  Result<void> deregister(const RegistrationKeys& keys) override;
  uint64_t registrations() const { return registrations_; }

 private:
  uint64_t registrations_ = 0;
};

}  // namespace zcio::iobuf
