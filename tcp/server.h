// TcpServer: accepts TCP connections and serves zcio calls on them.
//
// Each connection runs on one of `threads` io_contexts (one thread each), so
// its session needs no locking. A connection reads a call (preamble, header,
// then any WRITE payload into pool buffers), hands it to its ServerSession,
// and queues the reply; it keeps reading while replies are written, so a
// client's calls pipeline. A frame that breaks the protocol closes that
// connection with a logged reason; other connections carry on.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

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
  // A connection stops reading calls while this many reply bytes are queued
  // (a client that never reads cannot make us buffer without bound).
  uint64_t max_queued_reply_bytes = 64ull * 1024 * 1024;
  // A frame (preamble to last payload byte) that stops moving this long
  // closes its connection. Idle connections between frames are fine.
  std::chrono::milliseconds frame_stall_timeout{30000};
  std::shared_ptr<iobuf::BufferPool> pool;  // made if null
};

struct ServerCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> protocol_errors{0};
};

class Connection;

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
  void forget(Connection* connection);

  ServerOptions options_;
  rpc::Service& service_;
  ServerCounters counters_;
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
  std::unique_ptr<asio::ip::tcp::acceptor> acceptor_;
  size_t next_context_ = 0;
  uint16_t port_ = 0;
  std::mutex connections_mutex_;
  std::set<std::shared_ptr<Connection>> connections_;
  bool stopped_ = false;
};

}  // namespace zcio::tcp
