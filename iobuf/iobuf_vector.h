// IoBufVector (GlusterFS's iobref + iovec in one): an ordered list of slices
// of IoBufs. It keeps every buffer it references alive.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

#include "iobuf/iobuf.h"

namespace zcio::iobuf {

struct IoSlice {
  IoBufPtr buf;
  size_t offset = 0;
  size_t length = 0;

  std::byte* data() const { return buf->data() + offset; }
};

class IoBufVector {
 public:
  IoBufVector() = default;
  IoBufVector(const IoBufVector&) = default;
  IoBufVector& operator=(const IoBufVector&) = default;
  // A moved-from vector is empty (length 0), not just slice-less.
  IoBufVector(IoBufVector&& other) noexcept
      : slices_(std::move(other.slices_)), total_(std::exchange(other.total_, 0)) {
    other.slices_.clear();
  }
  IoBufVector& operator=(IoBufVector&& other) noexcept {
    slices_ = std::move(other.slices_);
    other.slices_.clear();
    total_ = std::exchange(other.total_, 0);
    return *this;
  }

  void append(IoBufPtr buf, size_t offset, size_t length);
  // Wraps caller memory described by `iov` (no copy, no ownership).
  static IoBufVector wrapUser(std::span<const iovec> iov);

  size_t totalLength() const { return total_; }
  const std::vector<IoSlice>& slices() const { return slices_; }
  bool empty() const { return slices_.empty(); }
  void clear();
  // Drops bytes past `length` (a short read at EOF).
  void truncate(size_t length);

  // iovecs over the slices (for readv/writev/recvmsg).
  std::vector<iovec> toIovecs() const;

  // Copies min(totalLength(), capacity of dst) bytes into dst; returns the
  // count. This is the one copy of the regular read path.
  size_t copyTo(std::span<const iovec> dst) const;

 private:
  std::vector<IoSlice> slices_;
  size_t total_ = 0;
};

// Sum of iov_len over iov.
size_t iovLength(std::span<const iovec> iov);

}  // namespace zcio::iobuf
