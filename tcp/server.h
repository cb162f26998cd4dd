// TcpServer: accepts TCP connections and serves zcio calls on them.
//
// Each connection runs on one of `threads` io_contexts (one thread each), so
// its session needs no locking. A connection reads a call (preamble, header,
// then any WRITE payload into pool buffers), hands it to its ServerSession,
// and queues the reply; it keeps reading while replies are written, so a
// client's calls pipeline. A frame that breaks the protocol closes that
// connection with a logged reason; other connections carry on.
//
// Limits that hold against a hostile client: what a connection may queue
// (bytes and frames), how long it may sit idle or stall a frame or a reply,
// how many connections the server and each client address may hold, which
// addresses may connect, and what happens when the process runs out of file
// descriptors. A refused connection is answered, not dropped: its first call
// gets an error reply (tcp/refusal.h) naming the reason.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/admission.h"
#include "iobuf/buffer_pool.h"
#include "rpc/frame.h"
#include "rpc/service.h"
#include "tcp/asio.h"

namespace zcio::tcp {

struct ServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: pick a free port (see port())
  unsigned threads = 1;
  uint64_t max_payload = rpc::kMaxPayloadLength;
  // A connection stops reading calls while its queued replies reach either
  // bound (a client that never reads cannot make us buffer without bound).
  // Bytes count everything a reply holds: preamble, header, payload and
  // kQueuedFrameOverhead for its bookkeeping.
  uint64_t max_queued_reply_bytes = 64ull * 1024 * 1024;
  uint32_t max_queued_replies = 1024;
  // A frame (preamble to last payload byte) that stops moving this long, or
  // a reply write that moves no byte this long, closes its connection.
  std::chrono::milliseconds frame_stall_timeout{30000};
  // Connection caps, the allow-list and the idle timeout (a connection
  // waiting for, or part-way through, a call's preamble this long is closed).
  ConnectionLimits limits;
  std::shared_ptr<iobuf::BufferPool> pool;  // made if null
};

struct ServerCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> refused{0};        // answered with an error reply, then closed
  std::atomic<uint64_t> accept_errors{0};  // accept() failures (EMFILE, ...)
};

// Bookkeeping a queued reply costs beyond its bytes (deque slot, header
// string, buffer list), counted against max_queued_reply_bytes.
inline constexpr uint64_t kQueuedFrameOverhead = 256;

class Connection;
class Refusal;

class TcpServer {
 public:
  static Result<std::unique_ptr<TcpServer>> start(ServerOptions options, rpc::Service& service);
  ~TcpServer();

  uint16_t port() const { return port_; }
  const ServerCounters& counters() const { return counters_; }
  // Closes the listener and every connection, joins the threads. Idempotent.
  void stop();

  TcpServer(ServerOptions options, rpc::Service& service);  // use start()

 private:
  friend class Connection;
  Result<void> listen();
  void accept();
  // The rest of the accept path runs on contexts_[0], the acceptor's thread.
  void onAccepted(asio::ip::tcp::socket socket);
  void onAcceptError(const error_code& ec);
  void refuse(asio::ip::tcp::socket socket, const Error& why, const std::string& peer);
  void refillReserve();
  void forget(Connection* connection);
  void forget(Refusal* refusal);

  ServerOptions options_;
  rpc::Service& service_;
  ServerCounters counters_;
  // Before the contexts: tickets in their pending handlers point here.
  Admission admission_{options_.limits};
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  size_t next_context_ = 0;
  uint16_t port_ = 0;
  std::mutex connections_mutex_;
  std::set<std::shared_ptr<Connection>> connections_;
  std::set<std::shared_ptr<Refusal>> refusals_;
  bool stopped_ = false;

  // Kept open so that at EMFILE a few waiting clients can still be accepted
  // and told why they are refused (then closed, and these reopened).
  std::vector<int> reserve_fds_;
  std::unique_ptr<asio::steady_timer> accept_backoff_;
  // accept() failures: at most one log line a second, with a count.
  std::chrono::steady_clock::time_point last_accept_log_{};
  uint64_t accept_errors_unlogged_ = 0;
  std::chrono::steady_clock::time_point last_refusal_log_{};
  uint64_t refusals_unlogged_ = 0;
};

}  // namespace zcio::tcp
