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
  for (size_t i = 0; i < slabs_.size(); ++i) {
    if (registrar_ != nullptr && i < slab_keys_.size()) {
      auto r = registrar_->deregister(slab_keys_[i]);
      (void)r;  // nothing left to do about it at teardown
    }
    std::free(slabs_[i]);
  }
}

Result<void> BufferPool::registerSlabLocked(size_t index) {
  size_t slab_size = options_.chunk_size * options_.chunks_per_slab;
  auto keys = registrar_->registerRange(slabs_[index], slab_size, access_);
  if (!keys) return keys.error();
  slab_keys_.push_back(*keys);
  return okResult();
}

void BufferPool::deregisterSlabs() {
  std::lock_guard lock(mutex_);
  if (registrar_ == nullptr) return;
  for (auto& keys : slab_keys_) (void)registrar_->deregister(keys);
  slab_keys_.clear();
  registrar_ = nullptr;
}

Result<void> BufferPool::registerSlabs(MemoryRegistrar& registrar, uint32_t access) {
  std::lock_guard lock(mutex_);
  if (registrar_ != nullptr) return makeError(EBUSY, "buffer pool slabs are already registered");
  registrar_ = &registrar;
  access_ = access;
  for (size_t i = 0; i < slabs_.size(); ++i) {
    auto r = registerSlabLocked(i);
    if (!r) {
      for (auto& keys : slab_keys_) (void)registrar.deregister(keys);
      slab_keys_.clear();
      registrar_ = nullptr;
      return r.error();
    }
  }
  return okResult();
}

Result<void> BufferPool::growLocked() {
  size_t slab_size = options_.chunk_size * options_.chunks_per_slab;
  if ((slabs_.size() + 1) * slab_size > options_.max_bytes) {
    return makeError(ENOMEM,
                     "buffer pool cap of " + std::to_string(options_.max_bytes) + " bytes reached");
  }
  auto* slab = static_cast<std::byte*>(std::aligned_alloc(kPageSize, slab_size));
  if (slab == nullptr) return makeError(ENOMEM, "aligned_alloc of a pool slab failed");
  slabs_.push_back(slab);
  uint32_t index = static_cast<uint32_t>(slabs_.size() - 1);
  if (registrar_ != nullptr) {
    auto r = registerSlabLocked(index);
    if (!r) {
      slabs_.pop_back();
      std::free(slab);
      return r.error();
    }
  }
  for (size_t i = 0; i < options_.chunks_per_slab; ++i) {
    free_.push_back(Chunk{slab + i * options_.chunk_size, index});
  }
  return okResult();
}

Result<IoBufPtr> BufferPool::get() {
  Chunk chunk{};
  RegistrationKeys keys;
  {
    std::lock_guard lock(mutex_);
    if (free_.empty()) ZCIO_RETURN_IF_ERROR(growLocked());
    chunk = free_.back();
    free_.pop_back();
    if (chunk.slab < slab_keys_.size()) keys = slab_keys_[chunk.slab];
  }
  // The releaser holds the pool alive until the chunk is back.
  auto self = shared_from_this();
  uint32_t slab = chunk.slab;
  auto buf = IoBuf::takeOwnership(chunk.data, options_.chunk_size, [self, slab](std::byte* data) {
    self->put(Chunk{data, slab});
  });
  buf->setRegistration(keys);
  return buf;
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

void BufferPool::put(Chunk chunk) {
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
