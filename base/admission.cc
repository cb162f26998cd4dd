#include "base/admission.h"

namespace zcio {

AdmissionTicket& AdmissionTicket::operator=(AdmissionTicket&& other) noexcept {
  if (this != &other) {
    reset();
    owner_ = other.owner_;
    address_ = other.address_;
    other.owner_ = nullptr;
  }
  return *this;
}

void AdmissionTicket::reset() {
  if (owner_ != nullptr) owner_->release(address_);
  owner_ = nullptr;
}

Result<AdmissionTicket> Admission::admit(const IpAddress& address) {
  if (!limits_.allow.allows(address))
    return makeError(EACCES, "address not allowed (" + address.toString() + ")");
  std::lock_guard lock(mutex_);
  if (total_ >= limits_.max_connections) {
    return makeError(EUSERS, "too many connections (the server's cap is " +
                                 std::to_string(limits_.max_connections) + ")");
  }
  unsigned& mine = per_client_[address];
  if (mine >= limits_.max_connections_per_client) {
    return makeError(EUSERS, "too many connections from " + address.toString() + " (cap " +
                                 std::to_string(limits_.max_connections_per_client) +
                                 " per client)");
  }
  ++mine;
  ++total_;
  return AdmissionTicket(this, address);
}

unsigned Admission::admitted() const {
  std::lock_guard lock(mutex_);
  return total_;
}

void Admission::release(const IpAddress& address) {
  std::lock_guard lock(mutex_);
  --total_;
  auto it = per_client_.find(address);
  if (it != per_client_.end() && --it->second == 0) per_client_.erase(it);
}

Error outOfDescriptorsError() {
  return makeError(EMFILE, "server is out of file descriptors");
}

}  // namespace zcio
