// CallWorker: runs sessions' calls on a thread of their own, so that the
// server's polling thread keeps posting RDMA work while a brick reads a file.
//
// On rxe the packet work of a posted RDMA WRITE runs in the posting thread's
// system call; a brick's preadv on that same thread adds to it serially. With
// the call handled here, the two overlap on different CPUs.
//
// Calls are run one at a time in submission order, so a connection's calls
// reach its session in the order they arrived (the session may assume one
// caller at a time, as before). Each finished call is queued with its result
// and `wake_fd` (an eventfd) is written; the owner collects them with
// takeDone(). forget(owner) drops an owner's queued calls and results and
// waits for one that is running: after it returns, the worker holds nothing
// of that owner (its session may be destroyed).
#pragma once

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "base/result.h"
#include "rpc/service.h"

namespace zcio::verbs {

class CallWorker {
 public:
  struct Done {
    const void* owner;
    void* tag;
    Result<rpc::OutgoingReply> reply;
  };

  explicit CallWorker(int wake_fd);
  ~CallWorker();
  CallWorker(const CallWorker&) = delete;
  CallWorker& operator=(const CallWorker&) = delete;

  // `session` must stay alive until forget(owner) or the result is taken.
  void submit(const void* owner, void* tag, rpc::ServerSession* session, rpc::IncomingCall call);
  std::vector<Done> takeDone();
  void forget(const void* owner);

 private:
  struct Job {
    const void* owner;
    void* tag;
    rpc::ServerSession* session;
    rpc::IncomingCall call;
  };
  void run();

  const int wake_fd_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Job> jobs_;
  std::vector<Done> done_;
  const void* running_ = nullptr;  // owner of the call being handled
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace zcio::verbs
