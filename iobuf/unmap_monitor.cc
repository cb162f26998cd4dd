#include "iobuf/unmap_monitor.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

namespace zcio::iobuf {
namespace {

constexpr uint64_t kFeatures =
    UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_REMAP;

// Why a given way of opening failed, kept for the final error message.
std::string describe(const char* how, int code) {
  return std::string(how) + ": " + std::strerror(code);
}

// The fd must be non-blocking: poll() then read() until EAGAIN, and
// userfaultfd's poll() reports EPOLLERR on blocking fds.
int openUserfaultfd(bool* user_mode_only, std::string* via, std::string* why) {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = static_cast<int>(::syscall(SYS_userfaultfd, flags));
  if (fd >= 0) {
    *via = "syscall";
    return fd;
  }
  *why = describe("userfaultfd()", errno);
  // Linux >= 6.1: access to the device node replaces CAP_SYS_PTRACE.
  int dev = ::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ::ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    int saved = errno;
    ::close(dev);
    if (fd >= 0) {
      *via = "/dev/userfaultfd";
      return fd;
    }
    *why += "; " + describe("USERFAULTFD_IOC_NEW", saved);
  } else {
    *why += "; " + describe("open(/dev/userfaultfd)", errno);
  }
  // vm.unprivileged_userfaultfd=0 still allows user-mode-only contexts (5.11+).
  fd = static_cast<int>(::syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
  if (fd >= 0) {
    *via = "syscall user-mode-only";
    *user_mode_only = true;
    return fd;
  }
  *why += "; " + describe("userfaultfd(UFFD_USER_MODE_ONLY)", errno);
  return -1;
}

}  // namespace

Result<std::unique_ptr<UnmapMonitor>> UnmapMonitor::create(size_t queue_capacity) {
  std::unique_ptr<UnmapMonitor> m(new UnmapMonitor());
  m->page_size_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  m->creator_ = ::getpid();
  std::string why;
  m->uffd_ = openUserfaultfd(&m->user_mode_only_, &m->opened_via_, &why);
  if (m->uffd_ < 0) return makeError(errno, "userfaultfd unavailable (" + why + ")");

  uffdio_api api{};
  api.api = UFFD_API;
  api.features = kFeatures;
  if (::ioctl(m->uffd_, UFFDIO_API, &api) != 0)
    return errnoError("ioctl(UFFDIO_API, EVENT_UNMAP|REMOVE|REMAP)");
  if ((api.features & kFeatures) != kFeatures) {
    return makeError(ENOTSUP, "userfaultfd lacks EVENT_UNMAP/REMOVE/REMAP (kernel < 4.11?)");
  }

  m->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (m->stop_fd_ < 0) return errnoError("eventfd");
  m->wake_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (m->wake_fd_ < 0) return errnoError("eventfd");

  uint64_t capacity = 64;
  while (capacity < queue_capacity) capacity *= 2;
  m->capacity_ = capacity;
  m->ring_bytes_ = (capacity * sizeof(Slot) + m->page_size_ - 1) / m->page_size_ * m->page_size_;
  void* ring = ::mmap(nullptr, m->ring_bytes_, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (ring == MAP_FAILED) return errnoError("mmap(event queue)");
  m->ring_ = static_cast<Slot*>(ring);

  UnmapMonitor* raw = m.get();
  m->thread_ = std::make_unique<std::thread>([raw] { raw->run(); });
  return m;
}

UnmapMonitor::~UnmapMonitor() {
  if (thread_) {
    if (::getpid() == creator_) {
      uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(stop_fd_, &one, sizeof one);
      thread_->join();
    } else {
      (void)thread_.release();  // a forked child has no such thread: leak the handle
    }
  }
  // Closing the uffd drops every registration and wakes every waiter.
  if (uffd_ >= 0) ::close(uffd_);
  if (stop_fd_ >= 0) ::close(stop_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  if (ring_ != nullptr) ::munmap(ring_, ring_bytes_);
}

Result<void> UnmapMonitor::watch(uintptr_t begin, size_t length) {
  uffdio_register reg{};
  reg.range.start = begin;
  reg.range.len = length;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (::ioctl(uffd_, UFFDIO_REGISTER, &reg) != 0) return errnoError("ioctl(UFFDIO_REGISTER)");
  if ((reg.ioctls & (uint64_t{1} << _UFFDIO_ZEROPAGE)) == 0) {
    return makeError(EOPNOTSUPP, "UFFDIO_REGISTER: no UFFDIO_ZEROPAGE for this range (hugetlbfs?)");
  }
  return okResult();
}

Result<void> UnmapMonitor::unwatch(uintptr_t begin, size_t length) {
  uffdio_range range{begin, length};
  if (::ioctl(uffd_, UFFDIO_UNREGISTER, &range) != 0) return errnoError("ioctl(UFFDIO_UNREGISTER)");
  return okResult();
}

void UnmapMonitor::waitPublished(uint64_t ticket) const {
  while (readsPublished() < ticket) std::this_thread::yield();
}

size_t UnmapMonitor::consume(const std::function<void(const AddressSpaceEvent&)>& fn) {
  size_t n = 0;
  uint64_t head = head_.load(std::memory_order_relaxed);
  const uint64_t tail = tail_.load(std::memory_order_acquire);
  for (; head != tail; ++head, ++n) {
    AddressSpaceEvent event = ring_[head & (capacity_ - 1)].event;
    head_.store(head + 1, std::memory_order_release);
    fn(event);
  }
  if (overflow_.exchange(false, std::memory_order_acq_rel)) {
    fn(AddressSpaceEvent{AddressSpaceEvent::Kind::kOverflow, 0, UINTPTR_MAX, 0});
    ++n;
  }
  return n;
}

void UnmapMonitor::wakeConsumer() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

UnmapMonitor::Counters UnmapMonitor::counters() const {
  Counters c;
  c.unmap_events = unmap_events_.load(std::memory_order_relaxed);
  c.remove_events = remove_events_.load(std::memory_order_relaxed);
  c.remap_events = remap_events_.load(std::memory_order_relaxed);
  c.faults_resolved = faults_resolved_.load(std::memory_order_relaxed);
  c.overflows = overflows_.load(std::memory_order_relaxed);
  return c;
}

// Producer side of the queue. Never blocks: when full, record an overflow.
void UnmapMonitor::push(const AddressSpaceEvent& event) {
  const uint64_t tail = tail_.load(std::memory_order_relaxed);
  if (tail - head_.load(std::memory_order_acquire) >= capacity_) {
    overflow_.store(true, std::memory_order_release);
    overflows_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  ring_[tail & (capacity_ - 1)].event = event;
  tail_.store(tail + 1, std::memory_order_release);
}

void UnmapMonitor::resolveFault(uintptr_t address) {
  const uintptr_t page = address & ~(uintptr_t{page_size_} - 1);
  uffdio_zeropage zero{};
  zero.range.start = page;
  zero.range.len = page_size_;
  zero.mode = 0;  // wakes the faulting threads on success
  if (::ioctl(uffd_, UFFDIO_ZEROPAGE, &zero) != 0) {
    // EEXIST (already populated), EAGAIN (mapping changing), ENOENT (no longer
    // registered), ...: let the thread retry its fault; it will not come back
    // here unless the page is still missing in a watched range.
    uffdio_range range{page, page_size_};
    ::ioctl(uffd_, UFFDIO_WAKE, &range);
  }
  faults_resolved_.fetch_add(1, std::memory_order_relaxed);
}

// No heap allocation, no locks and no access to watched memory in here: any of
// them could make this thread wait for an event only it can read.
void UnmapMonitor::run() {
  uffd_msg msgs[32];
  for (;;) {
    pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int ready = ::poll(fds, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      ::usleep(1000);  // cannot happen with valid fds; never spin hard
      continue;
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) {
      ::usleep(1000);  // POLLERR/POLLNVAL: not expected on a non-blocking uffd
      continue;
    }

    bool queued = false;
    for (;;) {
      // The ticket is taken before read(2): the read may release an unmapper.
      const uint64_t ticket = reads_started_.fetch_add(1, std::memory_order_seq_cst) + 1;
      ssize_t n = ::read(uffd_, msgs, sizeof msgs);
      size_t count = n > 0 ? static_cast<size_t>(n) / sizeof(uffd_msg) : 0;
      for (size_t i = 0; i < count; ++i) {
        const uffd_msg& msg = msgs[i];
        AddressSpaceEvent event;
        switch (msg.event) {
          case UFFD_EVENT_PAGEFAULT:
            resolveFault(static_cast<uintptr_t>(msg.arg.pagefault.address));
            continue;
          case UFFD_EVENT_UNMAP:
            event = {AddressSpaceEvent::Kind::kUnmap, static_cast<uintptr_t>(msg.arg.remove.start),
                     static_cast<uintptr_t>(msg.arg.remove.end), 0};
            unmap_events_.fetch_add(1, std::memory_order_relaxed);
            break;
          case UFFD_EVENT_REMOVE:
            event = {AddressSpaceEvent::Kind::kRemove, static_cast<uintptr_t>(msg.arg.remove.start),
                     static_cast<uintptr_t>(msg.arg.remove.end), 0};
            remove_events_.fetch_add(1, std::memory_order_relaxed);
            break;
          case UFFD_EVENT_REMAP:
            event = {AddressSpaceEvent::Kind::kRemap, static_cast<uintptr_t>(msg.arg.remap.from),
                     static_cast<uintptr_t>(msg.arg.remap.from + msg.arg.remap.len),
                     static_cast<uintptr_t>(msg.arg.remap.to)};
            remap_events_.fetch_add(1, std::memory_order_relaxed);
            break;
          default:
            continue;  // FORK is not negotiated; nothing else is an address-space change
        }
        push(event);
        queued = true;
      }
      reads_published_.store(ticket, std::memory_order_release);
      if (n <= 0) break;  // EAGAIN: drained; anything else: poll again
    }
    if (queued || overflow_.load(std::memory_order_relaxed)) wakeConsumer();
  }
}

}  // namespace zcio::iobuf
