// zcio::fops::Client: the file API an application uses.
//
//   auto client = Client::connect("tcp://127.0.0.1:7700");
//   auto fh = (*client)->open("data/f1", O_RDONLY);
//   (*client)->preadvDirect(*fh, iov, offset);   // lands in iov, 0 copies
//
// Read variants:
//  - preadvDirect: the reply payload is received straight into `iov`; zcio
//    copies none of it. `iov` must stay valid and untouched until the call
//    returns (async: until the callback ran). No alignment is required on
//    TCP (the verbs transport will state its own).
//  - preadv (regular): the payload lands in pool buffers and is copied into
//    `iov` — GlusterFS's behaviour, kept for interop, caching and as the
//    baseline. Counted in stats().bytes_copied.
// Write variants:
//  - pwritevDirect: gathered from `iov` with writev, no copy.
//  - pwritev (regular): copied into pool buffers first (counted), so `iov` is
//    free again as soon as the call is queued.
// "Direct" is a client-side property; the wire protocol is the same.
//
// A short read (EOF) is a result, not an error. One call moves at most
// maxIoSize() bytes (64 MiB); larger requests fail with EINVAL.
//
// Arguments are checked before any byte moves, on every read and write
// variant (sync and async; a refused async call runs `done` at once): an
// iovec with a NULL base and a nonzero length fails with EFAULT; more than
// IOV_MAX iovecs, lengths whose sum overflows ssize_t, or an offset + length
// past INT64_MAX fail with EINVAL. A refused call leaves the connection as it
// was. Not checked: a non-NULL base that is not mapped (see zcio.h for what
// each variant then does). A path whose call header would exceed the frame
// limit (rpc::kMaxHeaderLength, or the verbs message size) fails with
// ENAMETOOLONG without being sent; the server refuses paths of PATH_MAX
// bytes or more with ENAMETOOLONG.
//
// Caching layers (both OFF by default; see ClientOptions and FileOptions):
//  - io-cache (io_cache_bytes > 0): regular reads fill and are served from a
//    page-granular (4 KiB) LRU cache of that many bytes. A direct read
//    bypasses it and purges the pages it overlaps (it still copies 0 bytes);
//    any write purges the pages it overlaps; an open/stat/fstat reply whose
//    size or mtime differs from the last one seen drops the file's pages.
//    Other clients' writes are seen after such a reply, or by a direct read.
//  - write-behind (write_behind = true): a regular write is copied into a
//    staging buffer and acknowledged at once; adjacent or overlapping small
//    writes are collapsed into one call (stats().writes_collapsed). Staged
//    data is sent on fsync, close, a size cap, a time cap, and before an
//    overlapping read (regular or direct). A direct write is synchronous: it
//    waits for every earlier overlapping write-behind write (a barrier), is
//    never collapsed and its iov is not retained after it completes. These
//    rules hold across all handles of a file on this client (keyed by inode):
//    a read through one handle waits for staged writes made through another.
//    The first error of a write-behind write is returned by every later
//    operation on the handle that wrote until fsync or close returns (and
//    clears) it. Async writers are acknowledged early only while the client
//    holds at most write_behind_window_bytes unsent or in flight; past that
//    their acknowledgements wait for completions (back-pressure; sync
//    writers block). Other clients see write-behind data after fsync or
//    close. An async call
//    that has to wait on such a barrier returns an empty AsyncCall (it cannot
//    be cancelled while it waits). Staged data of a client being destroyed
//    is sent (best effort) before its connection closes.
//
// Thread-safety: all methods are thread-safe. Sync methods block the calling
// thread; async callbacks run on the connection's thread and must not block
// or call sync methods of the same client.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/result.h"
#include "fops/io_cache.h"
#include "fops/write_behind.h"
#include "iobuf/buffer_pool.h"
#include "rpc/transport.h"
#include "verbs/client_transport.h"

namespace zcio::fops {

using FileHandle = uint64_t;

struct FileStat {
  uint64_t size = 0;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t ino = 0;
};

struct ClientOptions {
  std::chrono::milliseconds timeout{60000};  // per call
  uint32_t max_in_flight = 1024;             // request-table slots (TCP)
  verbs::VerbsClientOptions rdma;            // rdma:// and auto://
  // io-cache: byte cap of the client read cache; 0 (default) disables it.
  uint64_t io_cache_bytes = 0;
  // write-behind: off by default.
  bool write_behind = false;
  uint64_t write_behind_aggregate_bytes = 128 * 1024;    // largest collapsed write
  uint64_t write_behind_window_bytes = 4 * 1024 * 1024;  // outstanding before writers are held
  std::chrono::milliseconds write_behind_delay{10};      // staged data waits at most this
  // A synchronous call spins this long for its reply before it sleeps (see
  // fops/sync_waiter.h); 0 sleeps at once.
  std::chrono::microseconds sync_spin{50};
  // The export's shared key (rpc/shared_key.h), proven in the HELLO handshake
  // before any call; the server must prove it too. Empty: $ZCIO_KEY_FILE if
  // set, else no key (only a server started with --auth none is accepted).
  std::string key_file;
};

// Per-file switches (setFileOptions): a layer is used for a file when it is
// on for the client and not switched off here. Default: both allowed.
struct FileOptions {
  bool io_cache = true;
  bool write_behind = true;
};

// A snapshot of the client's counters.
struct ClientStats {
  uint64_t requests = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t bytes_copied = 0;  // payload bytes zcio copied in user space
  uint64_t late_replies = 0;
  uint64_t bytes_discarded = 0;
  uint64_t timeouts = 0;
  uint64_t cancels = 0;
  uint64_t protocol_errors = 0;
  uint64_t registrations = 0;         // RDMA: user memory registered for one call
  uint64_t registration_hits = 0;     // RDMA: calls served by pre-registered memory
  uint64_t io_cache_hits = 0;         // regular reads served wholly from the io-cache
  uint64_t io_cache_misses = 0;       // regular reads that went to the server
  uint64_t io_cache_purges = 0;       // cached pages dropped by writes, direct reads, attr changes
  uint64_t writes_collapsed = 0;      // regular writes merged into a staged write-behind write
  uint64_t write_behind_flushes = 0;  // write calls sent by write-behind
};

enum class IoMode { kRegular, kDirect };

// Lets an async call be cancelled.
class AsyncCall {
 public:
  AsyncCall() = default;
  explicit AsyncCall(rpc::CallPtr call) : call_(std::move(call)) {}
  const rpc::CallPtr& call() const { return call_; }

 private:
  rpc::CallPtr call_;
};

class Client {
 public:
  using IoCallback = std::function<void(Result<size_t>)>;

  // url: tcp://host:port, rdma://host:port, or auto://host:port (RDMA when a
  // device and route exist, else TCP; describe() says which).
  static Result<std::unique_ptr<Client>> connect(const std::string& url,
                                                 ClientOptions options = {});
  // Adopts an existing transport (tests, and the verbs transport later).
  Client(std::unique_ptr<rpc::Transport> transport, ClientOptions options);
  ~Client();

  // flags: O_RDONLY / O_WRONLY / O_RDWR, O_CREAT, O_TRUNC, O_EXCL.
  Result<FileHandle> open(const std::string& path, int flags, mode_t mode = 0644);
  Result<FileStat> stat(const std::string& path);
  Result<FileStat> fstat(FileHandle fh);
  Result<void> fsync(FileHandle fh);
  Result<void> close(FileHandle fh);
  // Switches the caching layers off (or back on) for one open file; turning
  // write-behind off first sends and waits for the file's staged writes.
  Result<void> setFileOptions(FileHandle fh, FileOptions options);

  Result<size_t> preadv(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> preadvDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> pwritev(FileHandle fh, std::span<const iovec> iov, uint64_t offset);
  Result<size_t> pwritevDirect(FileHandle fh, std::span<const iovec> iov, uint64_t offset);

  // Async forms: `done` gets the byte count or the error.
  AsyncCall preadvAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                        IoCallback done);
  AsyncCall pwritevAsync(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                         IoCallback done);
  // The callback then runs with ECANCELED unless the call had completed.
  void cancel(const AsyncCall& call);

  // Pre-registers memory the application will read into / write from many
  // times (as MPI_Alloc_mem or ucp_mem_map do): on RDMA, direct calls inside
  // it skip registration (stats().registration_hits); the memory is exposed
  // to the server for as long as it stays registered, and a failed or
  // cancelled call on it closes the connection (the only way to revoke a
  // long-lived rkey early). Deregister before freeing. No-op on TCP.
  Result<void> registerMemory(void* addr, size_t length);
  Result<void> deregisterMemory(void* addr, size_t length);

  // Ends the connection: staged write-behind data is sent (best effort),
  // then every pending call fails with ESHUTDOWN and later calls fail at
  // once. Idempotent, thread-safe (other threads may be in calls); not from a
  // callback. The destructor calls it.
  void shutdown();

  ClientStats stats() const;
  std::string describe() const;
  static constexpr uint64_t maxIoSize() { return 64ull * 1024 * 1024; }

 private:
  using HeaderCallback = std::function<void(Result<rpc::ReplyData>)>;
  rpc::CallPtr makeCall(rpc::pb::Op op, HeaderCallback done);
  Result<rpc::ReplyData> roundTrip(rpc::CallPtr call);
  template <typename Start>
  Result<size_t> runSync(Start&& start);

  struct FileInfo {
    uint64_t cache_key = 0;  // the inode, or a key derived from the handle
    FileOptions options;
  };
  FileInfo fileInfo(FileHandle fh);
  void observeAttr(const rpc::pb::Attr& attr);
  // Waits (blocking) for write-behind writes of fh overlapping the range
  // (length 0: all).
  void waitBarrier(FileHandle fh, uint64_t offset, uint64_t length);
  // The raw calls, below the caching layers.
  AsyncCall sendRead(FileHandle fh, std::vector<iovec> iov, uint64_t offset, IoMode mode,
                     IoCallback done);
  AsyncCall sendWrite(FileHandle fh, std::span<const iovec> iov, uint64_t offset, IoMode mode,
                      std::function<void()> on_complete, IoCallback done);

  // The caching layers (null when off). Declared before transport_ so they
  // outlive the transport's last callbacks.
  std::unique_ptr<IoCache> cache_;
  std::unique_ptr<WriteBehind> write_behind_;
  std::mutex files_mutex_;
  std::unordered_map<FileHandle, FileInfo> files_;

  std::unique_ptr<rpc::Transport> transport_;
  ClientOptions options_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> bytes_copied_{0};
};

}  // namespace zcio::fops
