// IoBuf: one contiguous byte range and who owns it.
//
// Two kinds exist, as in folly's IOBuf vocabulary:
//  - pool-owned: a slab chunk from a BufferPool, returned to it when the last
//    IoBufPtr drops (create via BufferPool::get);
//  - user memory: IoBuf::wrapUser points at caller memory and never frees it;
//    the caller keeps it valid until every request using it has completed.
// An IoBuf may carry an opaque registration (keys filled in by a transport's
// MemoryRegistrar); iobuf/ never interprets it.
//
// Thread-safety: an IoBufPtr is a shared_ptr (atomic count); the bytes are not
// synchronised — one request writes a buffer at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace zcio::iobuf {

// Keys a registrar hands out for a range; zero when unregistered (TCP).
struct RegistrationKeys {
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  uint64_t handle = 0;  // registrar-private identity of the registration
};

class IoBuf {
 public:
  using Releaser = std::function<void(std::byte*)>;

  // Points at caller memory; never frees it.
  static std::shared_ptr<IoBuf> wrapUser(void* data, size_t size);
  // Owns `data`; `release` runs when the last reference drops.
  static std::shared_ptr<IoBuf> takeOwnership(std::byte* data, size_t size, Releaser release);

  IoBuf(std::byte* data, size_t size, bool user_memory, Releaser release);
  ~IoBuf();
  IoBuf(const IoBuf&) = delete;
  IoBuf& operator=(const IoBuf&) = delete;

  std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  bool isUserMemory() const { return user_memory_; }

  const RegistrationKeys& registration() const { return keys_; }
  void setRegistration(RegistrationKeys keys) { keys_ = keys; }

 private:
  std::byte* data_;
  size_t size_;
  bool user_memory_;
  Releaser release_;
  RegistrationKeys keys_;
};

using IoBufPtr = std::shared_ptr<IoBuf>;

}  // namespace zcio::iobuf
