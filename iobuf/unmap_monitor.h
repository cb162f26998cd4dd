// UnmapMonitor: tells the registration cache when watched parts of this
// process's address space are unmapped, moved, or lose their pages, using
// userfaultfd(2) as an event source (no page-fault handling is wanted).
//
// How it works
//  - One userfaultfd with UFFD_FEATURE_EVENT_UNMAP | _REMOVE | _REMAP. It is
//    opened with the syscall; where that is refused, through /dev/userfaultfd;
//    where both are refused, with UFFD_USER_MODE_ONLY (always allowed to an
//    unprivileged process on Linux >= 5.11, see below). create() fails with a
//    reason when none of those works (ENOSYS, EPERM from seccomp, ...).
//  - watch() registers a page-aligned range in MISSING mode (the only mode
//    that anonymous and shmem memory support everywhere); the events above are
//    then delivered for it: UNMAP for munmap/brk shrink/mmap(MAP_FIXED) over it/
//    mremap shrink, REMOVE for madvise(DONTNEED|DONTNEED_LOCKED|FREE|REMOVE),
//    REMAP for mremap moves.
//  - The kernel makes the thread that unmaps (or zaps) wait until its event has
//    been read(2) from the fd. REMOVE is delivered before the pages are
//    zapped; UNMAP and REMAP after the old mapping is gone.
//  - A monitor thread poll()s the fd and read()s messages into a bounded
//    single-producer queue. It takes no user lock, never allocates or frees
//    heap memory and never touches watched memory, so it can never wait on an
//    event itself (a thread holding the cache's mutex may free() memory that
//    glibc or ASan then trims with munmap/madvise over a watched range: that
//    thread waits for this one, never the other way round).
//  - Every read(2) gets a ticket: readsStarted() is bumped *before* the read
//    and readsPublished() set once that read's events are queued. A thread
//    whose munmap() has returned therefore sees readsStarted() past the read
//    that released it; a consumer that finds readsStarted() beyond what it has
//    consumed waits for readsPublished() to catch up (a few microseconds at
//    most: the monitor is never blocked) and then drains the queue. This is
//    how "an acquire that starts after munmap() returned sees the
//    invalidation" holds without the monitor taking the cache's mutex.
//  - Page faults: a MISSING fault in a watched range means the page is not
//    present (never touched, or zapped just before an unwatch). Such a page
//    holds no registered data, so the monitor resolves it the way the kernel
//    would have, with UFFDIO_ZEROPAGE, and wakes the faulting thread
//    (UFFDIO_WAKE) whatever the outcome; no faulting thread is left waiting.
//    watch() refuses ranges where UFFDIO_ZEROPAGE is unavailable (hugetlbfs).
//    With UFFD_USER_MODE_ONLY, a *kernel* access (a syscall or get_user_pages
//    writing into such a page) fails with EFAULT instead; the cache prefaults
//    ranges before watching them so that only races reach this.
//  - If the queue is full, the monitor keeps reading (an unmapper must never
//    wait for the consumer) and raises an overflow event instead: the consumer
//    must then treat every watched range as invalidated.
//
// Thread-safety: watch/unwatch/counters from any thread. consume() and
// waitPublished() are for one consumer at a time (the cache calls them under
// its mutex). Lifetime: the destructor stops the thread and closes the fd,
// which makes the kernel drop every watch and wake every waiter.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <sys/types.h>

#include "base/result.h"

namespace zcio::iobuf {

struct AddressSpaceEvent {
  enum class Kind : uint32_t {
    kUnmap,     // [begin, end) no longer mapped
    kRemove,    // pages of [begin, end) dropped (madvise)
    kRemap,     // [begin, end) moved to [remap_to, remap_to + end - begin)
    kOverflow,  // events were lost: assume every watched range changed
  };
  Kind kind = Kind::kUnmap;
  uintptr_t begin = 0;
  uintptr_t end = 0;
  uintptr_t remap_to = 0;
};

class UnmapMonitor {
 public:
  struct Counters {
    uint64_t unmap_events = 0;
    uint64_t remove_events = 0;
    uint64_t remap_events = 0;
    uint64_t faults_resolved = 0;  // MISSING faults answered with a zero page or a wake
    uint64_t overflows = 0;
  };

  // Opens the userfaultfd, negotiates the events and starts the monitor
  // thread. On failure the error says why (the cache logs it once and stops
  // caching). `queue_capacity` is rounded up to a power of two.
  static Result<std::unique_ptr<UnmapMonitor>> create(size_t queue_capacity = 4096);
  ~UnmapMonitor();
  UnmapMonitor(const UnmapMonitor&) = delete;
  UnmapMonitor& operator=(const UnmapMonitor&) = delete;

  // Registers the page-aligned range. Errors: EINVAL/EPERM/EBUSY/ENOMEM from
  // UFFDIO_REGISTER when the memory cannot be watched (file-backed private
  // mapping, another userfaultfd owns it, not mapped, ...); EOPNOTSUPP when
  // the range was registered but faults in it cannot be resolved (hugetlbfs):
  // the caller must unwatch() it (possibly only the pages nobody else needs).
  Result<void> watch(uintptr_t begin, size_t length);
  // UFFDIO_UNREGISTER. Unwatching pages that other users still rely on removes
  // their protection too: the caller keeps track of coverage.
  Result<void> unwatch(uintptr_t begin, size_t length);

  // Ticket protocol, see above. readsStarted() is one acquire load.
  uint64_t readsStarted() const { return reads_started_.load(std::memory_order_acquire); }
  uint64_t readsPublished() const { return reads_published_.load(std::memory_order_acquire); }
  // Spins (yielding) until readsPublished() >= ticket.
  void waitPublished(uint64_t ticket) const;
  // Pops every queued event in order; raises kOverflow once if any were lost.
  // One consumer at a time. Returns the number of events handed out.
  size_t consume(const std::function<void(const AddressSpaceEvent&)>& fn);

  // eventfd the monitor writes when it queues events: a consumer thread may
  // block reading it. wakeConsumer() writes it too (to stop that thread).
  int consumerWakeFd() const { return wake_fd_; }
  void wakeConsumer();

  Counters counters() const;
  // How the fd was obtained: "syscall", "/dev/userfaultfd", "syscall user-mode-only".
  const std::string& openedVia() const { return opened_via_; }
  bool userModeOnly() const { return user_mode_only_; }

 private:
  struct Slot {
    AddressSpaceEvent event;
  };

  UnmapMonitor() = default;
  void run();
  void push(const AddressSpaceEvent& event);
  void resolveFault(uintptr_t address);

  int uffd_ = -1;
  int stop_fd_ = -1;
  int wake_fd_ = -1;
  bool user_mode_only_ = false;
  std::string opened_via_;
  size_t page_size_ = 4096;

  // The queue lives in its own mapping so that no user registration can share
  // (and watch) its pages.
  Slot* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  uint64_t capacity_ = 0;                      // power of two
  alignas(64) std::atomic<uint64_t> tail_{0};  // written by the monitor
  alignas(64) std::atomic<uint64_t> head_{0};  // written by the consumer
  alignas(64) std::atomic<uint64_t> reads_started_{0};
  std::atomic<uint64_t> reads_published_{0};
  std::atomic<bool> overflow_{false};

  std::atomic<uint64_t> unmap_events_{0};
  std::atomic<uint64_t> remove_events_{0};
  std::atomic<uint64_t> remap_events_{0};
  std::atomic<uint64_t> faults_resolved_{0};
  std::atomic<uint64_t> overflows_{0};

  pid_t creator_ = 0;  // a forked child must not join the parent's thread
  std::unique_ptr<std::thread> thread_;
};

}  // namespace zcio::iobuf
