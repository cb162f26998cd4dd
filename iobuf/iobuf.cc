#include "iobuf/iobuf.h"

#include <utility>

namespace zcio::iobuf {

IoBuf::IoBuf(std::byte* data, size_t size, bool user_memory, Releaser release)
    : data_(data), size_(size), user_memory_(user_memory), release_(std::move(release)) {}

IoBuf::~IoBuf() {
  if (release_) release_(data_);
}

std::shared_ptr<IoBuf> IoBuf::wrapUser(void* data, size_t size) {
  return std::make_shared<IoBuf>(static_cast<std::byte*>(data), size, true, nullptr);
}

std::shared_ptr<IoBuf> IoBuf::takeOwnership(std::byte* data, size_t size, Releaser release) {
  return std::make_shared<IoBuf>(data, size, false, std::move(release));
}

}  // namespace zcio::iobuf
