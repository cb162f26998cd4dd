// zcio::fops::WriteBehind: the client's optional write-behind layer.
//
// A regular write is copied into a staging buffer of its file and
// acknowledged at once. Files are identified by a key (the client uses the
// inode), so ordering holds across every handle of a file the client has
// open; calls go out on the handle that wrote. Each file has at most one
// open (not yet sent) staging buffer; a write of the same handle that starts
// inside or right at the end of it, and keeps it within `aggregate_bytes`,
// is merged into it (counted in collapsed()). The buffer is sent as one write call when a write
// does not fit it, when it reaches `aggregate_bytes`, when it is `delay` old (a timer thread), when
// the client holds more than `window_bytes` of unsent data, and before any read, direct write,
// fsync or close that overlaps it. Staging buffers are sent in the order they were closed (one
// submit lock), so overlapping write-behind writes reach the server in program order.
//
// barrier() is how ordering is enforced: it sends the overlapping staged
// data and runs its continuation once every write-behind write of the file
// that overlaps the range and was sent before it has completed (inline when
// none is outstanding, else on the transport thread). Nothing blocks: sync
// callers wait on a future around it.
//
// The first error of a write-behind write is latched on the handle that
// wrote and reported by every later operation on that handle until fsync or
// close takes it.
//
// Back-pressure: a sync writer blocks in throttle() while more than
// window_bytes are outstanding (staged + in flight). An async writer must not
// block (it may be on the transport thread), so its acknowledgement is held
// instead: acknowledge() runs the ack at once when the client is inside the
// window, else when completions bring it back inside, oldest first. A writer
// that keeps a bounded number of writes in flight is thereby slowed to the
// server's pace, as a page cache's dirty limit slows write(2).
#pragma once

#include <sys/uio.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/result.h"

namespace zcio::fops {

struct WriteBehindOptions {
  uint64_t aggregate_bytes = 128 * 1024;    // largest collapsed write
  uint64_t window_bytes = 4 * 1024 * 1024;  // unsent + in-flight before back-pressure
  std::chrono::milliseconds delay{10};      // oldest unsent data waits this long
};

class WriteBehind {
 public:
  using Done = std::function<void(Result<size_t>)>;
  // Sends `length` bytes of `data` at `offset` of `fh` as one write call;
  // `done` runs once the server answered (and the data may be freed).
  using Submit = std::function<void(uint64_t fh, std::shared_ptr<std::vector<uint8_t>> data,
                                    uint64_t offset, Done done)>;

  WriteBehind(WriteBehindOptions options, Submit submit);
  ~WriteBehind();
  WriteBehind(const WriteBehind&) = delete;
  WriteBehind& operator=(const WriteBehind&) = delete;

  // Stages a regular write to file `key` through handle `fh` (copies
  // `iov`); returns its length.
  size_t write(uint64_t key, uint64_t fh, std::span<const iovec> iov, uint64_t offset);
  // Sends the staged data of file `key` overlapping [offset, offset + length)
  // (length 0: the whole file), then runs `then` once every write-behind
  // write of the file overlapping it has completed. Returns true (and does
  // not keep `then`) when nothing was outstanding: the caller goes on inline.
  bool barrier(uint64_t key, uint64_t offset, uint64_t length, std::function<void()> then);
  // Blocks the calling thread while more than window_bytes are outstanding
  // (sync writers only; never call it on the transport thread).
  void throttle();
  // Runs `ack` now if the client is inside its window (returns true), else
  // keeps it until completions bring it back inside (returns false). Never
  // blocks. Acks still held at drain() run then.
  bool acknowledge(std::function<void()> ack);
  // Acks held back right now (tests, stats).
  size_t heldAcks() const;
  // The latched error of handle `fh`, if any (left latched).
  std::optional<Error> error(uint64_t fh);
  // Takes (clears) the latched error: fsync and close.
  std::optional<Error> takeError(uint64_t fh);
  // Forgets file `key` if nothing of it is staged or in flight (close).
  void forget(uint64_t key);
  // Sends every staged buffer and waits (up to `limit`) for all in-flight
  // writes; stops the timer thread. For the client's destructor.
  void drain(std::chrono::milliseconds limit);

  uint64_t collapsed() const;
  uint64_t flushes() const;

 private:
  struct Staged {
    uint64_t fh = 0;
    uint64_t offset = 0;
    std::shared_ptr<std::vector<uint8_t>> data;
    std::chrono::steady_clock::time_point since;
  };
  struct InFlight {
    uint64_t id, start, end;
  };
  struct Waiter {
    std::vector<uint64_t> ids;  // in-flight writes it still waits for
    std::function<void()> then;
  };
  struct File {
    std::optional<Staged> staged;
    std::vector<InFlight> in_flight;
    std::vector<Waiter> waiters;
  };
  struct Send {
    uint64_t key, id;
    Staged staged;
  };

  // Moves `file`'s staged buffer to in-flight; the caller sends it.
  void closeStagedLocked(uint64_t key, File& file, std::vector<Send>& out);
  void sendAll(std::vector<Send>& sends);  // under submit_mutex_, not mutex_
  void completed(uint64_t key, uint64_t fh, uint64_t id, uint64_t bytes,
                 const Result<size_t>& result);
  bool insideWindowLocked() const;
  void timerLoop();

  const WriteBehindOptions options_;
  const Submit submit_;
  std::recursive_mutex submit_mutex_;  // order of sends = order of closing
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::unordered_map<uint64_t, File> files_;    // by file key
  std::unordered_map<uint64_t, Error> errors_;  // by handle
  std::deque<std::function<void()>> held_acks_;
  uint64_t next_id_ = 1;
  uint64_t staged_bytes_ = 0;
  uint64_t in_flight_bytes_ = 0;
  uint64_t collapsed_ = 0;
  uint64_t flushes_ = 0;
  bool stopping_ = false;
  std::thread timer_;
};

}  // namespace zcio::fops
