// Move-only RAII owners for every verbs and rdma_cm object zcio creates.
//
// Each is a std::unique_ptr with a deleter that calls the matching destroy
// function and logs (never throws) when it fails; rdma-core's destroy calls
// return an errno value rather than setting errno. Declare owners parent
// first (event channel, cm id, PD, CQ, QP, MRs) so they die in reverse.
// Raw pointers leave verbs/ only through .get() at a call site.
#pragma once

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <memory>

namespace zcio::verbs {

void logTeardownFailure(const char* call, int code);

template <auto Destroy, const char* Name>
struct Deleter {
  template <typename T>
  void operator()(T* object) const {
    if (object == nullptr) return;
    int rc = Destroy(object);
    if (rc != 0) logTeardownFailure(Name, rc < 0 ? errno : rc);
  }
};

inline constexpr char kDestroyEventChannel[] = "rdma_destroy_event_channel";
inline constexpr char kDestroyId[] = "rdma_destroy_id";
inline constexpr char kDeallocPd[] = "ibv_dealloc_pd";
inline constexpr char kDestroyCompChannel[] = "ibv_destroy_comp_channel";
inline constexpr char kDestroyCq[] = "ibv_destroy_cq";
inline constexpr char kDeregMr[] = "ibv_dereg_mr";
inline constexpr char kDeallocMw[] = "ibv_dealloc_mw";

inline int destroyEventChannel(rdma_event_channel* c) {
  rdma_destroy_event_channel(c);  // returns void
  return 0;
}

using EventChannel =
    std::unique_ptr<rdma_event_channel, Deleter<destroyEventChannel, kDestroyEventChannel>>;
using CmId = std::unique_ptr<rdma_cm_id, Deleter<rdma_destroy_id, kDestroyId>>;
using ProtectionDomain = std::unique_ptr<ibv_pd, Deleter<ibv_dealloc_pd, kDeallocPd>>;
using CompletionChannel =
    std::unique_ptr<ibv_comp_channel, Deleter<ibv_destroy_comp_channel, kDestroyCompChannel>>;
using CompletionQueue = std::unique_ptr<ibv_cq, Deleter<ibv_destroy_cq, kDestroyCq>>;
using MemoryRegion = std::unique_ptr<ibv_mr, Deleter<ibv_dereg_mr, kDeregMr>>;
// ibv_dealloc_mw is static inline in verbs.h: a template argument needs a
// function with linkage.
int deallocMemoryWindow(ibv_mw* mw);
using MemoryWindow = std::unique_ptr<ibv_mw, Deleter<deallocMemoryWindow, kDeallocMw>>;

// The QP of a cm id is destroyed through the id (rdma_destroy_qp); this owner
// holds the id it belongs to and must die before the id.
class QueuePair {
 public:
  QueuePair() = default;
  explicit QueuePair(rdma_cm_id* id) : id_(id) {}
  QueuePair(QueuePair&& other) noexcept : id_(other.id_) { other.id_ = nullptr; }
  QueuePair& operator=(QueuePair&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = other.id_;
      other.id_ = nullptr;
    }
    return *this;
  }
  QueuePair(const QueuePair&) = delete;
  QueuePair& operator=(const QueuePair&) = delete;
  ~QueuePair() { reset(); }

  ibv_qp* get() const { return id_ != nullptr ? id_->qp : nullptr; }
  explicit operator bool() const { return get() != nullptr; }
  void reset() {
    if (id_ != nullptr && id_->qp != nullptr) rdma_destroy_qp(id_);
    id_ = nullptr;
  }

 private:
  rdma_cm_id* id_ = nullptr;
};

}  // namespace zcio::verbs
