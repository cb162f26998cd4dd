#include "iobuf/iobuf_vector.h"

#include <algorithm>
#include <cstring>

namespace zcio::iobuf {

void IoBufVector::append(IoBufPtr buf, size_t offset, size_t length) {
  total_ += length;
  slices_.push_back(IoSlice{std::move(buf), offset, length});
}

IoBufVector IoBufVector::wrapUser(std::span<const iovec> iov) {
  IoBufVector out;
  for (const iovec& v : iov) {
    if (v.iov_len == 0) continue;
    out.append(IoBuf::wrapUser(v.iov_base, v.iov_len), 0, v.iov_len);
  }
  return out;
}

void IoBufVector::clear() {
  slices_.clear();
  total_ = 0;
}

void IoBufVector::truncate(size_t length) {
  if (length >= total_) return;
  size_t kept = 0;
  size_t i = 0;
  for (; i < slices_.size() && kept < length; ++i) {
    slices_[i].length = std::min(slices_[i].length, length - kept);
    kept += slices_[i].length;
  }
  slices_.resize(i);
  total_ = kept;
}

std::vector<iovec> IoBufVector::toIovecs() const {
  std::vector<iovec> out;
  out.reserve(slices_.size());
  for (const IoSlice& s : slices_) out.push_back(iovec{s.data(), s.length});
  return out;
}

size_t IoBufVector::copyTo(std::span<const iovec> dst) const {
  size_t copied = 0;
  size_t di = 0;
  size_t doff = 0;
  for (const IoSlice& s : slices_) {
    size_t soff = 0;
    while (soff < s.length && di < dst.size()) {
      size_t n = std::min(s.length - soff, dst[di].iov_len - doff);
      std::memcpy(static_cast<std::byte*>(dst[di].iov_base) + doff, s.data() + soff, n);
      soff += n;
      doff += n;
      copied += n;
      if (doff == dst[di].iov_len) {
        ++di;
        doff = 0;
      }
    }
  }
  return copied;
}

size_t iovLength(std::span<const iovec> iov) {
  size_t n = 0;
  for (const iovec& v : iov) n += v.iov_len;
  return n;
}

}  // namespace zcio::iobuf
