#include "verbs/call_worker.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

namespace zcio::verbs {

CallWorker::CallWorker(int wake_fd) : wake_fd_(wake_fd), thread_([this] { run(); }) {}

CallWorker::~CallWorker() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void CallWorker::submit(const void* owner, void* tag, rpc::ServerSession* session,
                        rpc::IncomingCall call) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back({owner, tag, session, std::move(call)});
  }
  changed_.notify_all();
}

std::vector<CallWorker::Done> CallWorker::takeDone() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::exchange(done_, {});
}

void CallWorker::forget(const void* owner) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto mine = [owner](const auto& item) { return item.owner == owner; };
  jobs_.erase(std::remove_if(jobs_.begin(), jobs_.end(), mine), jobs_.end());
  changed_.wait(lock, [&] { return running_ != owner; });
  done_.erase(std::remove_if(done_.begin(), done_.end(), mine), done_.end());
}

void CallWorker::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    changed_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
    if (stopping_) return;
    Job job = std::move(jobs_.front());
    jobs_.pop_front();
    running_ = job.owner;
    lock.unlock();
    auto reply = job.session->handle(std::move(job.call));
    lock.lock();
    running_ = nullptr;
    done_.push_back({job.owner, job.tag, std::move(reply)});
    changed_.notify_all();  // a forget() may be waiting for this call
    uint64_t one = 1;
    ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
    (void)ignored;
  }
}

}  // namespace zcio::verbs
