#include "fops/write_behind.h"

#include <algorithm>

#include "fops/io_cache.h"
#include "iobuf/iobuf_vector.h"

namespace zcio::fops {
namespace {
// Calls in flight beyond which a sync writer waits (the transport refuses
// more than its table holds with EAGAIN).
constexpr uint64_t kMaxInFlightCalls = 256;
}  // namespace

WriteBehind::WriteBehind(WriteBehindOptions options, Submit submit)
    : options_(options), submit_(std::move(submit)) {
  timer_ = std::thread([this] { timerLoop(); });
}

WriteBehind::~WriteBehind() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
}

size_t WriteBehind::write(uint64_t fh, std::span<const iovec> iov, uint64_t offset) {
  uint64_t length = iobuf::iovLength(iov);
  if (length == 0) return 0;
  std::lock_guard submit_lock(submit_mutex_);
  std::vector<Send> sends;
  {
    std::lock_guard lock(mutex_);
    File& file = files_[fh];
    bool merged = false;
    if (file.staged) {
      Staged& s = *file.staged;
      uint64_t s_end = s.offset + s.data->size();
      uint64_t end = std::max(s_end, offset + length);
      if (offset >= s.offset && offset <= s_end && end - s.offset <= options_.aggregate_bytes) {
        uint64_t grow = end - s_end;
        s.data->resize(end - s.offset);
        copyFromIov(iov, 0, s.data->data() + (offset - s.offset), length);
        staged_bytes_ += grow;
        ++collapsed_;
        merged = true;
      } else {
        closeStagedLocked(fh, file, sends);
      }
    }
    if (!merged) {
      auto data = std::make_shared<std::vector<uint8_t>>(length);
      copyFromIov(iov, 0, data->data(), length);
      file.staged = Staged{offset, std::move(data), std::chrono::steady_clock::now()};
      staged_bytes_ += length;
    }
    if (file.staged->data->size() >= options_.aggregate_bytes) closeStagedLocked(fh, file, sends);
    if (staged_bytes_ > options_.window_bytes) {
      for (auto& [other_fh, other] : files_) {
        if (other.staged) closeStagedLocked(other_fh, other, sends);
      }
    }
  }
  sendAll(sends);
  return length;
}

void WriteBehind::closeStagedLocked(uint64_t fh, File& file, std::vector<Send>& out) {
  Staged staged = std::move(*file.staged);
  file.staged.reset();
  uint64_t size = staged.data->size();
  uint64_t id = next_id_++;
  file.in_flight.push_back(InFlight{id, staged.offset, staged.offset + size});
  staged_bytes_ -= size;
  in_flight_bytes_ += size;
  ++flushes_;
  out.push_back(Send{fh, id, std::move(staged)});
}

void WriteBehind::sendAll(std::vector<Send>& sends) {
  for (auto& send : sends) {
    uint64_t fh = send.fh;
    uint64_t id = send.id;
    uint64_t bytes = send.staged.data->size();
    submit_(fh, send.staged.data, send.staged.offset,
            [this, fh, id, bytes](Result<size_t> result) { completed(fh, id, bytes, result); });
  }
  sends.clear();
}

void WriteBehind::completed(uint64_t fh, uint64_t id, uint64_t bytes,
                            const Result<size_t>& result) {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(mutex_);
    in_flight_bytes_ -= bytes;
    auto f = files_.find(fh);
    if (f != files_.end()) {
      File& file = f->second;
      std::erase_if(file.in_flight, [id](const InFlight& w) { return w.id == id; });
      if (!file.error) {
        if (!result) {
          Error e = result.error();
          e.what = "write-behind write failed: " + e.what;
          file.error = std::move(e);
        } else if (*result != bytes) {
          file.error = makeError(EIO, "write-behind write was short: " + std::to_string(*result) +
                                          " of " + std::to_string(bytes) + " bytes");
        }
      }
      for (auto it = file.waiters.begin(); it != file.waiters.end();) {
        std::erase(it->ids, id);
        if (it->ids.empty()) {
          ready.push_back(std::move(it->then));
          it = file.waiters.erase(it);
        } else {
          ++it;
        }
      }
    }
  }
  cv_.notify_all();
  for (auto& then : ready) then();
}

bool WriteBehind::barrier(uint64_t fh, uint64_t offset, uint64_t length,
                          std::function<void()> then) {
  std::lock_guard submit_lock(submit_mutex_);
  std::vector<Send> sends;
  bool clear = true;
  {
    std::lock_guard lock(mutex_);
    auto f = files_.find(fh);
    if (f == files_.end()) return true;
    File& file = f->second;
    uint64_t end = length == 0 ? UINT64_MAX : offset + length;
    auto overlaps = [&](uint64_t s, uint64_t e) { return length == 0 || (s < end && offset < e); };
    if (file.staged &&
        overlaps(file.staged->offset, file.staged->offset + file.staged->data->size())) {
      closeStagedLocked(fh, file, sends);
    }
    Waiter waiter;
    for (const auto& w : file.in_flight) {
      if (overlaps(w.start, w.end)) waiter.ids.push_back(w.id);
    }
    if (!waiter.ids.empty()) {
      clear = false;
      waiter.then = std::move(then);
      file.waiters.push_back(std::move(waiter));
    }
  }
  sendAll(sends);
  return clear;
}

void WriteBehind::throttle() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] {
    uint64_t calls = 0;
    for (const auto& [fh, file] : files_) calls += file.in_flight.size();
    return stopping_ || (in_flight_bytes_ <= options_.window_bytes && calls <= kMaxInFlightCalls);
  });
}

std::optional<Error> WriteBehind::error(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto f = files_.find(fh);
  if (f == files_.end()) return std::nullopt;
  return f->second.error;
}

std::optional<Error> WriteBehind::takeError(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto f = files_.find(fh);
  if (f == files_.end()) return std::nullopt;
  return std::exchange(f->second.error, std::nullopt);
}

void WriteBehind::forget(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto f = files_.find(fh);
  if (f != files_.end() && !f->second.staged && f->second.in_flight.empty()) files_.erase(f);
}

void WriteBehind::drain(std::chrono::milliseconds limit) {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  {
    std::lock_guard submit_lock(submit_mutex_);
    std::vector<Send> sends;
    {
      std::lock_guard lock(mutex_);
      for (auto& [fh, file] : files_) {
        if (file.staged) closeStagedLocked(fh, file, sends);
      }
    }
    sendAll(sends);
  }
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, limit, [&] { return in_flight_bytes_ == 0; });
}

void WriteBehind::timerLoop() {
  auto tick = std::max(std::chrono::milliseconds(1), options_.delay / 2);
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, tick, [&] { return stopping_; });
      if (stopping_) return;
    }
    std::lock_guard submit_lock(submit_mutex_);
    std::vector<Send> sends;
    {
      std::lock_guard lock(mutex_);
      auto now = std::chrono::steady_clock::now();
      for (auto& [fh, file] : files_) {
        if (file.staged && now - file.staged->since >= options_.delay) {
          closeStagedLocked(fh, file, sends);
        }
      }
    }
    sendAll(sends);
  }
}

uint64_t WriteBehind::collapsed() const {
  std::lock_guard lock(mutex_);
  return collapsed_;
}

uint64_t WriteBehind::flushes() const {
  std::lock_guard lock(mutex_);
  return flushes_;
}

}  // namespace zcio::fops
