#include "fops/io_cache.h"

#include <algorithm>
#include <cstring>

#include "iobuf/iobuf_vector.h"

namespace zcio::fops {

void copyFromIov(std::span<const iovec> iov, uint64_t skip, uint8_t* dst, uint64_t length) {
  for (const auto& v : iov) {
    if (length == 0) break;
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    uint64_t take = std::min<uint64_t>(v.iov_len - skip, length);
    std::memcpy(dst, static_cast<const uint8_t*>(v.iov_base) + skip, take);
    dst += take;
    length -= take;
    skip = 0;
  }
}

void copyToIov(std::span<const iovec> iov, uint64_t skip, const uint8_t* src, uint64_t length) {
  for (const auto& v : iov) {
    if (length == 0) break;
    if (skip >= v.iov_len) {
      skip -= v.iov_len;
      continue;
    }
    uint64_t take = std::min<uint64_t>(v.iov_len - skip, length);
    std::memcpy(static_cast<uint8_t*>(v.iov_base) + skip, src, take);
    src += take;
    length -= take;
    skip = 0;
  }
}

bool IoCache::lookup(uint64_t key, std::span<const iovec> iov, uint64_t offset) {
  uint64_t length = iobuf::iovLength(iov);
  std::lock_guard lock(mutex_);
  auto f = files_.find(key);
  if (length == 0 || f == files_.end()) {
    misses_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  File& file = f->second;
  uint64_t first = offset / kPageSize;
  uint64_t last = (offset + length - 1) / kPageSize;
  for (uint64_t i = first; i <= last; ++i) {
    if (!file.pages.contains(i)) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
  }
  uint64_t done = 0;
  for (uint64_t i = first; i <= last; ++i) {
    auto it = file.pages.at(i);
    uint64_t page_start = i * kPageSize;
    uint64_t from = std::max(offset, page_start);
    uint64_t to = std::min(offset + length, page_start + kPageSize);
    copyToIov(iov, done, it->data.data() + (from - page_start), to - from);
    done += to - from;
    lru_.splice(lru_.begin(), lru_, it);
  }
  hits_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

uint64_t IoCache::generation(uint64_t key) {
  std::lock_guard lock(mutex_);
  return files_[key].generation;
}

uint64_t IoCache::fill(uint64_t key, uint64_t generation, std::span<const iovec> iov,
                       uint64_t offset, uint64_t length) {
  if (capacity_pages_ == 0) return 0;
  std::lock_guard lock(mutex_);
  File& file = files_[key];
  if (file.generation != generation) return 0;
  uint64_t first = (offset + kPageSize - 1) / kPageSize;
  uint64_t end = (offset + length) / kPageSize;  // exclusive
  uint64_t copied = 0;
  for (uint64_t i = first; i < end; ++i) {
    auto existing = file.pages.find(i);
    if (existing != file.pages.end()) {
      // Same generation: the cached bytes are as current as ours.
      lru_.splice(lru_.begin(), lru_, existing->second);
      continue;
    }
    while (lru_.size() >= capacity_pages_) {
      Page& victim = lru_.back();
      files_[victim.key].pages.erase(victim.index);
      lru_.pop_back();
    }
    lru_.push_front(Page{key, i, std::vector<uint8_t>(kPageSize)});
    copyFromIov(iov, i * kPageSize - offset, lru_.front().data.data(), kPageSize);
    file.pages.emplace(i, lru_.begin());
    copied += kPageSize;
  }
  return copied;
}

void IoCache::dropLocked(File& file, uint64_t index) {
  auto it = file.pages.find(index);
  if (it == file.pages.end()) return;
  lru_.erase(it->second);
  file.pages.erase(it);
  purges_.fetch_add(1, std::memory_order_relaxed);
}

void IoCache::purge(uint64_t key, uint64_t offset, uint64_t length) {
  std::lock_guard lock(mutex_);
  File& file = files_[key];
  ++file.generation;
  if (length == 0 || file.pages.empty()) return;
  uint64_t first = offset / kPageSize;
  uint64_t last = (offset + length - 1) / kPageSize;
  if (last - first + 1 > file.pages.size()) {
    std::vector<uint64_t> doomed;
    for (const auto& [index, it] : file.pages) {
      if (index >= first && index <= last) doomed.push_back(index);
    }
    for (uint64_t index : doomed) dropLocked(file, index);
  } else {
    for (uint64_t i = first; i <= last; ++i) dropLocked(file, i);
  }
}

void IoCache::observeAttr(uint64_t key, uint64_t size, int64_t mtime_ns) {
  std::lock_guard lock(mutex_);
  File& file = files_[key];
  if (file.attr_known && (file.size != size || file.mtime_ns != mtime_ns)) {
    ++file.generation;
    std::vector<uint64_t> doomed;
    for (const auto& [index, it] : file.pages) doomed.push_back(index);
    for (uint64_t index : doomed) dropLocked(file, index);
  }
  file.attr_known = true;
  file.size = size;
  file.mtime_ns = mtime_ns;
}

uint64_t IoCache::cachedPages() const {
  std::lock_guard lock(mutex_);
  return lru_.size();
}

}  // namespace zcio::fops
