// TcpClientTransport: the client end of one TCP connection.
//
// Read path: the reader takes the 32-byte preamble, then the header, looks
// the xid up in the request table, and receives the payload *straight into*
// the call's destination: the user's iov for direct calls (no user-space
// copy), pool buffers for regular ones. The payload is received in recvmsg()s
// of at most 64 KiB (and `receive_piece`), and a cancel or timeout that
// arrives mid-payload takes effect at the next piece boundary: the rest is
// drained into scratch, then the call completes. A direct destination that
// is not mapped (recvmsg fails with EFAULT) is handled the same way: the rest
// of that reply is drained and the one call fails with EFAULT.
//
// The reader calls recvmsg(MSG_DONTWAIT) itself while the socket has data and
// only asks the reactor to wait when it runs dry (a composed async_read paid
// a handler dispatch and an epoll_wait per 64 KiB). It yields to other
// handlers (sends, cancels, the sweep) every `receive_budget` bytes and after
// each reply, so completions — which issue the next calls — run at once.
//
// Write path: frames are gathered (writev) from the caller's memory. A call
// whose header exceeds rpc::kMaxHeaderLength fails with EMSGSIZE unsent. A
// direct write from memory that is not mapped fails part-way through its
// frame, so it ends the connection (EFAULT for every pending call).
//
// Threading: one io thread per connection runs every handler and every
// completion. The connection's state (request table, send and receive state)
// is guarded by one mutex, held by those handlers and by submit(), which
// starts a call on the caller's thread and usually puts its frame on the wire
// itself: a synchronous call then costs no hop to the io thread. Completions
// run on the io thread with that mutex released (they may submit).
// cancel/shutdown are thread-safe and post to the io thread.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "iobuf/buffer_pool.h"
#include "rpc/frame.h"
#include "rpc/request_table.h"
#include "rpc/transport.h"
#include "tcp/asio.h"

namespace zcio::tcp {

struct ClientOptions {
  uint32_t table_capacity = 1024;
  size_t receive_piece = 256 * 1024;
  size_t receive_budget = 1024 * 1024;  // bytes read before other handlers get a turn
  uint64_t max_payload = rpc::kMaxPayloadLength;
  std::chrono::milliseconds sweep_period{20};  // timeout granularity
  std::chrono::milliseconds connect_timeout{5000};
  std::shared_ptr<iobuf::BufferPool> pool;  // for regular reads; made if null
};

class TcpClientTransport final : public rpc::Transport {
 public:
  static Result<std::unique_ptr<TcpClientTransport>> connect(const std::string& host, uint16_t port,
                                                             ClientOptions options = {});
  ~TcpClientTransport() override;

  void submit(rpc::CallPtr call) override;
  void cancel(rpc::CallPtr call) override;
  void shutdown() override;
  const rpc::TransportCounters& counters() const override { return counters_; }
  std::string describe() const override { return description_; }
  std::shared_ptr<iobuf::BufferPool> payloadPool() const override { return options_.pool; }
  Result<void> registerMemory(void*, size_t) override { return okResult(); }
  Result<void> deregisterMemory(void*, size_t) override { return okResult(); }

  explicit TcpClientTransport(ClientOptions options);  // use connect()

 private:
  struct SlotFrame {  // per-slot send state, indexed like the request table
    rpc::PreambleBytes preamble{};
    std::string header;
    bool on_wire = false;  // part of the write in progress (the caller's memory in use)
  };

  Result<void> open(const std::string& host, uint16_t port);
  void start(rpc::CallPtr call);
  // Decides a call's result: completes it now, or holds the result
  // (kReleasing) while the write or the receive still uses its memory.
  void settle(rpc::PendingRequest& entry, Result<rpc::ReplyData> result);
  void abandon(rpc::PendingRequest& entry, Error error);
  bool memoryInUse(const rpc::PendingRequest& entry);
  void finish(rpc::PendingRequest& entry, Result<rpc::ReplyData> result);
  using Completions = std::vector<std::pair<rpc::CallPtr, Result<rpc::ReplyData>>>;
  template <typename Fn>
  void locked(Fn&& fn);  // fn under state_mutex_, then the completions it made
  void runCompletions(Completions& done);
  void flushSends();
  Result<size_t> sendNow();
  void skipSent(size_t n);
  void onSent(const std::vector<uint64_t>& xids);

  // Receive state machine: which part of a frame the next bytes belong to.
  enum class RxStage { kPreamble, kHeader, kPayload, kDrain };
  void receive();
  void waitReadable();
  size_t prepareWindow();
  void advance(size_t n);
  void readPreamble();
  void onPreamble();
  void onHeader();
  void onPayloadDone();
  void drain(uint64_t bytes);
  void failConnection(Error error);
  // When a byte last moved either way (the stall check's clock).
  void noteProgress();
  std::chrono::steady_clock::time_point lastProgress() const;
  void armSweep();
  void sweep();

  SlotFrame& frameOf(uint64_t xid) { return frames_[rpc::RequestTable::slotOf(xid)]; }

  ClientOptions options_;
  std::string description_;
  rpc::TransportCounters counters_;

  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer sweep_timer_;
  std::thread thread_;
  std::mutex lifecycle_mutex_;  // orders submit() against shutdown()
  bool stopping_ = false;       // under lifecycle_mutex_

  // Connection state below: under state_mutex_.
  std::mutex state_mutex_;
  Completions completions_;  // finished calls, run after the lock is let go
  rpc::RequestTable table_;
  std::vector<SlotFrame> frames_;
  std::vector<uint64_t> send_queue_;
  std::vector<uint64_t> sending_batch_;
  std::vector<asio::const_buffer> send_buffers_;
  std::vector<iovec> send_iov_;
  bool writing_ = false;
  std::atomic<std::chrono::steady_clock::rep> last_progress_{0};  // also set by async_write
  bool sweep_armed_ = false;
  bool closed_ = false;
  Error close_error_;

  RxStage rx_stage_ = RxStage::kPreamble;
  size_t rx_done_ = 0;            // bytes of the preamble or header received so far
  std::vector<iovec> rx_window_;  // what the next recvmsg() fills
  rpc::PreambleBytes rx_preamble_{};
  rpc::Preamble rx_frame_;
  std::vector<char> rx_header_;
  rpc::ReplyData rx_reply_;
  uint64_t rx_xid_ = 0;
  std::vector<iovec> rx_iov_;  // destination still to fill
  size_t rx_iov_index_ = 0;
  size_t rx_iov_offset_ = 0;
  uint64_t rx_remaining_ = 0;  // payload or drain bytes still to come
  std::vector<std::byte> scratch_;
};

}  // namespace zcio::tcp
