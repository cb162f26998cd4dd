// Admission: which peers a server lets connect, and how many at once. Shared
// by the TCP and RDMA servers so both refuse for the same reasons with the
// same words (the reason travels to the client: an error reply on TCP, the
// reject's private data on RDMA).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>

#include "base/cidr.h"
#include "base/result.h"

namespace zcio {

struct ConnectionLimits {
  unsigned max_connections = 1024;           // per server (listener)
  unsigned max_connections_per_client = 64;  // per client address
  // A connection with no call under way for this long is closed.
  std::chrono::milliseconds idle_timeout{300000};
  AllowList allow;  // empty: any address
};

class Admission;

// Holds one admitted connection's place; gives it back when destroyed.
class AdmissionTicket {
 public:
  AdmissionTicket() = default;
  AdmissionTicket(AdmissionTicket&& other) noexcept { *this = std::move(other); }
  AdmissionTicket& operator=(AdmissionTicket&& other) noexcept;
  ~AdmissionTicket() { reset(); }
  void reset();

 private:
  friend class Admission;
  AdmissionTicket(Admission* owner, IpAddress address) : owner_(owner), address_(address) {}
  Admission* owner_ = nullptr;
  IpAddress address_;
};

// Counts admitted connections per address. Thread-safe; must outlive every
// ticket it handed out.
class Admission {
 public:
  explicit Admission(const ConnectionLimits& limits) : limits_(limits) {}

  // A ticket, or why not: EACCES "address not allowed (...)" or EUSERS
  // "too many connections ...".
  Result<AdmissionTicket> admit(const IpAddress& address);
  unsigned admitted() const;

 private:
  friend class AdmissionTicket;
  void release(const IpAddress& address);

  const ConnectionLimits& limits_;
  mutable std::mutex mutex_;
  unsigned total_ = 0;
  std::map<IpAddress, unsigned> per_client_;
};

// The reason given to a client refused because the server has no file
// descriptors left (EMFILE).
Error outOfDescriptorsError();

}  // namespace zcio
