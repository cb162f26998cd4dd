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

size_t WriteBehind::write(uint64_t key, uint64_t fh, std::span<const iovec> iov, uint64_t offset) {
  uint64_t length = iobuf::iovLength(iov);
  if (length == 0) return 0;
  std::lock_guard submit_lock(submit_mutex_);
  std::vector<Send> sends;
  {
    std::lock_guard lock(mutex_);
    File& file = files_[key];
    bool merged = false;
    if (file.staged) {
      Staged& s = *file.staged;
      uint64_t s_end = s.offset + s.data->size();
      uint64_t end = std::max(s_end, offset + length);
      // Only writes of one handle are merged: the call goes out on it.
      if (s.fh == fh && offset >= s.offset && offset <= s_end &&
          end - s.offset <= options_.aggregate_bytes) {
        uint64_t grow = end - s_end;
        s.data->resize(end - s.offset);
        copyFromIov(iov, 0, s.data->data() + (offset - s.offset), length);
        staged_bytes_ += grow;
        ++collapsed_;
        merged = true;
      } else {
        closeStagedLocked(key, file, sends);
      }
    }
    if (!merged) {
      auto data = std::make_shared<std::vector<uint8_t>>(length);
      copyFromIov(iov, 0, data->data(), length);
      file.staged = Staged{fh, offset, std::move(data), std::chrono::steady_clock::now()};
      staged_bytes_ += length;
    }
    if (file.staged->data->size() >= options_.aggregate_bytes) closeStagedLocked(key, file, sends);
    if (staged_bytes_ > options_.window_bytes) {
      for (auto& [other_key, other] : files_) {
        if (other.staged) closeStagedLocked(other_key, other, sends);
      }
    }
  }
  sendAll(sends);
  return length;
}

void WriteBehind::closeStagedLocked(uint64_t key, File& file, std::vector<Send>& out) {
  Staged staged = std::move(*file.staged);
  file.staged.reset();
  uint64_t size = staged.data->size();
  uint64_t id = next_id_++;
  file.in_flight.push_back(InFlight{id, staged.offset, staged.offset + size});
  staged_bytes_ -= size;
  in_flight_bytes_ += size;
  ++flushes_;
  out.push_back(Send{key, id, std::move(staged)});
}

void WriteBehind::sendAll(std::vector<Send>& sends) {
  for (auto& send : sends) {
    uint64_t key = send.key;
    uint64_t fh = send.staged.fh;
    uint64_t id = send.id;
    uint64_t bytes = send.staged.data->size();
    submit_(fh, send.staged.data, send.staged.offset,
            [this, key, fh, id, bytes](const Result<size_t>& result) {
              completed(key, fh, id, bytes, result);
            });
  }
  sends.clear();
}

void WriteBehind::completed(uint64_t key, uint64_t fh, uint64_t id, uint64_t bytes,
                            const Result<size_t>& result) {
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(mutex_);
    in_flight_bytes_ -= bytes;
    if (!errors_.contains(fh)) {
      if (!result) {
        Error e = result.error();
        e.what = "write-behind write failed: " + e.what;
        errors_.emplace(fh, std::move(e));
      } else if (*result != bytes) {
        errors_.emplace(
            fh, makeError(EIO, "write-behind write was short: " + std::to_string(*result) + " of " +
                                   std::to_string(bytes) + " bytes"));
      }
    }
    auto f = files_.find(key);
    if (f != files_.end()) {
      File& file = f->second;
      std::erase_if(file.in_flight, [id](const InFlight& w) { return w.id == id; });
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
    while (!held_acks_.empty() && insideWindowLocked()) {
      ready.push_back(std::move(held_acks_.front()));
      held_acks_.pop_front();
    }
  }
  cv_.notify_all();
  for (auto& then : ready) then();
}

bool WriteBehind::barrier(uint64_t key, uint64_t offset, uint64_t length,
                          std::function<void()> then) {
  std::lock_guard submit_lock(submit_mutex_);
  std::vector<Send> sends;
  bool clear = true;
  {
    std::lock_guard lock(mutex_);
    auto f = files_.find(key);
    if (f == files_.end()) return true;
    File& file = f->second;
    uint64_t end = length == 0 ? UINT64_MAX : offset + length;
    auto overlaps = [&](uint64_t s, uint64_t e) { return length == 0 || (s < end && offset < e); };
    if (file.staged &&
        overlaps(file.staged->offset, file.staged->offset + file.staged->data->size())) {
      closeStagedLocked(key, file, sends);
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

bool WriteBehind::insideWindowLocked() const {
  uint64_t calls = 0;
  for (const auto& [key, file] : files_) calls += file.in_flight.size();
  return staged_bytes_ + in_flight_bytes_ <= options_.window_bytes && calls <= kMaxInFlightCalls;
}

void WriteBehind::throttle() {
  std::unique_lock lock(mutex_);
  cv_.wait(lock, [&] { return stopping_ || insideWindowLocked(); });
}

bool WriteBehind::acknowledge(std::function<void()> ack) {
  {
    std::lock_guard lock(mutex_);
    // Behind earlier held acks even when inside: acks keep program order.
    if (!stopping_ && (!held_acks_.empty() || !insideWindowLocked())) {
      held_acks_.push_back(std::move(ack));
      return false;
    }
  }
  ack();
  return true;
}

size_t WriteBehind::heldAcks() const {
  std::lock_guard lock(mutex_);
  return held_acks_.size();
}

std::optional<Error> WriteBehind::error(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto e = errors_.find(fh);
  if (e == errors_.end()) return std::nullopt;
  return e->second;
}

std::optional<Error> WriteBehind::takeError(uint64_t fh) {
  std::lock_guard lock(mutex_);
  auto e = errors_.find(fh);
  if (e == errors_.end()) return std::nullopt;
  Error taken = std::move(e->second);
  errors_.erase(e);
  return taken;
}

void WriteBehind::forget(uint64_t key) {
  std::lock_guard lock(mutex_);
  auto f = files_.find(key);
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
      for (auto& [key, file] : files_) {
        if (file.staged) closeStagedLocked(key, file, sends);
      }
    }
    sendAll(sends);
  }
  std::deque<std::function<void()>> acks;
  {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, limit, [&] { return in_flight_bytes_ == 0; });
    acks.swap(held_acks_);
  }
  for (auto& ack : acks) ack();
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
      for (auto& [key, file] : files_) {
        if (file.staged && now - file.staged->since >= options_.delay) {
          closeStagedLocked(key, file, sends);
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
