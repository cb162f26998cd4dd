// BufferPool: fixed-size, page-aligned chunks carved from slabs, reused
// through a free list. Regular (copying) reads land here, and so do the
// server's file reads; page alignment lets a verbs registrar register whole
// slabs once instead of per request.
//
// A pool has a byte cap: get() fails with ENOMEM rather than growing without
// bound, so a peer's lengths can never make us allocate arbitrarily.
// Thread-safe. Create with BufferPool::create (shared ownership keeps the pool
// alive while any of its buffers is).
#pragma once

#include <cstddef>
#include <memory>
#include <mutex>
#include <vector>

#include "base/result.h"
#include "iobuf/iobuf.h"
#include "iobuf/iobuf_vector.h"
#include "iobuf/memory_registrar.h"

namespace zcio::iobuf {

class BufferPool : public std::enable_shared_from_this<BufferPool> {
 public:
  struct Options {
    size_t chunk_size = 256 * 1024;
    size_t chunks_per_slab = 16;
    size_t max_bytes = size_t{1} << 30;  // cap on slab memory
  };

  static std::shared_ptr<BufferPool> create(Options options);
  static std::shared_ptr<BufferPool> create() { return create(Options{}); }
  ~BufferPool();

  // One chunk of chunkSize() bytes.
  Result<IoBufPtr> get();
  // Enough chunks to hold `length` bytes, as slices totalling exactly `length`.
  Result<IoBufVector> getVector(size_t length);

  // Registers every slab (now and later) with `registrar` for `access`, so
  // each buffer from get() carries its slab's keys: an RDMA transport then
  // never registers pool memory on the hot path. The registrar must outlive
  // the pool (slabs are deregistered in the destructor). Once only.
  Result<void> registerSlabs(MemoryRegistrar& registrar, uint32_t access);
  // Undoes registerSlabs (the registrar's owner is going away); buffers then
  // carry no keys. Callers make sure no registered buffer is still in use.
  void deregisterSlabs();

  size_t chunkSize() const { return options_.chunk_size; }
  size_t slabBytes() const;
  size_t freeChunks() const;

  explicit BufferPool(Options options);

 private:
  struct Chunk {
    std::byte* data;
    uint32_t slab;
  };
  Result<void> growLocked();
  Result<void> registerSlabLocked(size_t index);
  void put(Chunk chunk);

  Options options_;
  mutable std::mutex mutex_;
  std::vector<std::byte*> slabs_;
  std::vector<RegistrationKeys> slab_keys_;  // parallel to slabs_ when registered
  std::vector<Chunk> free_;
  MemoryRegistrar* registrar_ = nullptr;
  uint32_t access_ = 0;
};

}  // namespace zcio::iobuf
