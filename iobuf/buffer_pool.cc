#include "iobuf/buffer_pool.h"

#include <cstdlib>
#include <string>

namespace zcio::iobuf {
namespace {
constexpr size_t kPageSize = 4096;
}

BufferPool::BufferPool(Options options) : options_(options) {
  // Chunks stay page-aligned, whatever size was asked for.
  options_.chunk_size = (options_.chunk_size + kPageSize - 1) / kPageSize * kPageSize;
  if (options_.chunks_per_slab == 0) options_.chunks_per_slab = 1;
}

std::shared_ptr<BufferPool> BufferPool::create(Options options) {
  return std::make_shared<BufferPool>(options);
}

BufferPool::~BufferPool() {
  for (std::byte* slab : slabs_) std::free(slab);
}

Result<void> BufferPool::growLocked() {
  size_t slab_size = options_.chunk_size * options_.chunks_per_slab;
  if ((slabs_.size() + 1) * slab_size > options_.max_bytes) {
    return makeError(ENOMEM, "buffer pool cap of " + std::to_string(options_.max_bytes) +
                                 " bytes reached");
  }
  auto* slab = static_cast<std::byte*>(std::aligned_alloc(kPageSize, slab_size));
  if (slab == nullptr) return makeError(ENOMEM, "aligned_alloc of a pool slab failed");
  slabs_.push_back(slab);
  for (size_t i = 0; i < options_.chunks_per_slab; ++i) {
    free_.push_back(slab + i * options_.chunk_size);
  }
  return okResult();
}

Result<IoBufPtr> BufferPool::get() {
  std::byte* chunk = nullptr;
  {
    std::lock_guard lock(mutex_);
    if (free_.empty()) ZCIO_RETURN_IF_ERROR(growLocked());
    chunk = free_.back();
    free_.pop_back();
  }
  // The releaser holds the pool alive until the chunk is back.
  auto self = shared_from_this();
  return IoBuf::takeOwnership(chunk, options_.chunk_size,
                              [self](std::byte* data) { self->put(data); });
}

Result<IoBufVector> BufferPool::getVector(size_t length) {
  IoBufVector out;
  while (length > 0) {
    auto buf = get();
    if (!buf) return buf.error();
    size_t take = std::min(length, options_.chunk_size);
    out.append(std::move(*buf), 0, take);
    length -= take;
  }
  return out;
}

void BufferPool::put(std::byte* chunk) {
  std::lock_guard lock(mutex_);
  free_.push_back(chunk);
}

size_t BufferPool::slabBytes() const {
  std::lock_guard lock(mutex_);
  return slabs_.size() * options_.chunk_size * options_.chunks_per_slab;
}

size_t BufferPool::freeChunks() const {
  std::lock_guard lock(mutex_);
  return free_.size();
}

}  // namespace zcio::iobuf
