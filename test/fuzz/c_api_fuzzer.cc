// The C API's argument checks (fops/zcio.h): each input is a sequence of
// zcio_* calls with arbitrary arguments against a real in-process server
// (Brick + TcpServer on loopback, in the no-auth mode: zcio_connect's HELLO
// passes). Only what the API defines is passed: NULL where a function checks
// for it, any int/off_t/flags/mode, paths with any
// bytes, iovcnt from -3 to the real count; iov bases always point at real
// memory of the stated length. Checked besides sanitizer reports:
//  - -1 / NULL comes with errno set, EINVAL for the documented bad arguments;
//  - a read or write never reports more bytes than its iov holds;
//  - a wrong URL (each one stays on loopback) or NULL options never connect;
//  - no path reaches outside the export (checked every 64 inputs);
//  - a fresh client can still stat the probe file (every 64 inputs).
// Every handle is closed and the client disconnected at the end of an input,
// so LeakSanitizer also sees what a close failed to free.
#include <fcntl.h>
#include <fuzzer/FuzzedDataProvider.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>
#include <vector>

#include "fops/zcio.h"
#include "test/fuzz/fuzz_support.h"

namespace {

using namespace zcio;

struct Harness {
  fuzz::FuzzExport exported;  // declared first: outlives the server
  fuzz::FuzzServer server = fuzz::startFuzzServer(exported.directory());
  std::string url = "tcp://127.0.0.1:" + std::to_string(server.port());
  uint64_t inputs = 0;
};

Harness& harness() {
  // A key from the environment would make every connect fail the no-auth server.
  static bool quiet = (fuzz::quietLogs(), ::unsetenv("ZCIO_KEY_FILE"), true);
  (void)quiet;
  static Harness h;
  return h;
}

[[noreturn]] void fail(const std::string& call, const std::string& why) {
  fuzz::fuzzFail(call + ": " + why);
}

// A failure must set errno; a documented bad argument must give EINVAL.
void checkFailure(const char* call, bool failed, bool bad_args) {
  if (bad_args && !failed) fail(call, "accepted a documented bad argument");
  if (bad_args && errno != EINVAL) fail(call, "bad argument gave errno " + std::to_string(errno));
  if (failed && errno == 0) fail(call, "failed without setting errno");
}

class Session {
 public:
  Session(FuzzedDataProvider& in, Harness& h) : in_(in), h_(h) {}
  ~Session() {
    for (zcio_fd_t* fd : fds_) (void)zcio_close(fd);
    if (client_ != nullptr && zcio_disconnect(client_) != 0) fail("zcio_disconnect", "failed");
  }

  void run() {
    client_ = connect();
    if (client_ == nullptr) return;
    for (int step = 0; step < 32 && in_.remaining_bytes() > 0; ++step) one();
  }

 private:
  zcio_client_t* connect() {
    if (!in_.ConsumeBool()) {
      errno = 0;
      zcio_client_t* c = zcio_connect(h_.url.c_str());
      if (c == nullptr)
        fail("zcio_connect", "our own server refused: errno " + std::to_string(errno));
      return c;
    }
    zcio_options options;
    zcio_options_init(&options);
    // 0 is refused; short timeouts would make a loaded machine's slow reply
    // look like a finding, so the rest start at 1 s.
    options.timeout_ms = in_.ConsumeBool() ? 0 : in_.ConsumeIntegralInRange<uint32_t>(1000, 5000);
    options.io_cache_bytes = in_.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
    options.write_behind = in_.ConsumeIntegral<int>();
    options.write_behind_aggregate_bytes = in_.ConsumeIntegralInRange<uint64_t>(0, 1 << 20);
    options.write_behind_window_bytes = in_.ConsumeIntegralInRange<uint64_t>(0, 1 << 22);
    options.write_behind_delay_ms = in_.ConsumeIntegralInRange<uint32_t>(0, 50);
    options.sync_spin_us = in_.ConsumeIntegralInRange<uint32_t>(0, 100);
    errno = 0;
    zcio_client_t* c = zcio_connect_with(h_.url.c_str(), &options);
    checkFailure("zcio_connect_with", c == nullptr, options.timeout_ms == 0);
    if (c == nullptr && options.timeout_ms != 0) {
      fail("zcio_connect_with", "our own server refused: errno " + std::to_string(errno));
    }
    return c;
  }

  // Any bytes, NUL included (the C string ends there), or NULL.
  const char* path() {
    if (in_.ConsumeIntegralInRange<int>(0, 15) == 0) return nullptr;
    path_ = in_.ConsumeRandomLengthString(48);
    return path_.c_str();
  }

  // An open handle (or NULL when none / when chosen).
  zcio_fd_t* fd(size_t* index) {
    if (fds_.empty() || in_.ConsumeIntegralInRange<int>(0, 7) == 0) return nullptr;
    *index = in_.ConsumeIntegralInRange<size_t>(0, fds_.size() - 1);
    return fds_[*index];
  }

  // URLs that are wrong in one way each; none leaves loopback.
  const char* badUrl() {
    static const char* const kUrls[] = {nullptr,
                                        "",
                                        "tcp://",
                                        "tcp://127.0.0.1",
                                        "tcp://127.0.0.1:0",
                                        "tcp://127.0.0.1:99999",
                                        "tcp://127.0.0.1:1",
                                        "nfs://127.0.0.1:1",
                                        "127.0.0.1:1",
                                        "tcp://:1",
                                        "tcp://[::1]:1"};
    return kUrls[in_.ConsumeIntegralInRange<size_t>(0, std::size(kUrls) - 1)];
  }

  void io() {
    size_t index = 0;
    zcio_fd_t* f = fd(&index);
    // Up to 4 iovecs into one buffer, each of a length that fits it.
    size_t count = in_.ConsumeIntegralInRange<size_t>(0, 4);
    buffer_.assign(4 * 4096, 'x');
    std::vector<iovec> iov;
    for (size_t i = 0; i < count; ++i) {
      size_t start = in_.ConsumeIntegralInRange<size_t>(0, 4 * 4096 - 1);
      size_t len = in_.ConsumeIntegralInRange<size_t>(0, 4 * 4096 - start);
      iov.push_back(iovec{buffer_.data() + start, len});
    }
    int iovcnt = in_.ConsumeIntegralInRange<int>(-3, static_cast<int>(count));
    // A NULL iov is checked: fine with no entries, EINVAL with some.
    const iovec* base = in_.ConsumeIntegralInRange<int>(0, 7) == 0 ? nullptr : iov.data();
    uint64_t total = 0;
    for (int i = 0; base != nullptr && i < iovcnt; ++i)
      total += iov[static_cast<size_t>(i)].iov_len;
    off_t offset = in_.ConsumeBool() ? in_.ConsumeIntegralInRange<off_t>(0, 1 << 20)
                                     : in_.ConsumeIntegral<off_t>();
    bool bad = f == nullptr || iovcnt < 0 || offset < 0 || (base == nullptr && iovcnt > 0);
    int which = in_.ConsumeIntegralInRange<int>(0, 3);
    static const char* const kNames[] = {"zcio_preadv", "zcio_preadv_direct", "zcio_pwritev",
                                         "zcio_pwritev_direct"};
    errno = 0;
    ssize_t n = which == 0   ? zcio_preadv(f, base, iovcnt, offset)
                : which == 1 ? zcio_preadv_direct(f, base, iovcnt, offset)
                : which == 2 ? zcio_pwritev(f, base, iovcnt, offset)
                             : zcio_pwritev_direct(f, base, iovcnt, offset);
    checkFailure(kNames[which], n == -1, bad);
    if (n < -1 || (n >= 0 && static_cast<uint64_t>(n) > total)) {
      fail(kNames[which],
           "returned " + std::to_string(n) + " for an iov of " + std::to_string(total) + " bytes");
    }
  }

  void one() {
    size_t index = 0;
    switch (in_.ConsumeIntegralInRange<int>(0, 10)) {
      case 0: {
        zcio_client_t* c = in_.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : client_;
        const char* p = path();
        int flags = in_.ConsumeBool()
                        ? in_.ConsumeIntegral<int>()
                        : in_.PickValueInArray({O_RDONLY, O_WRONLY, O_RDWR}) |
                              (in_.ConsumeBool() ? O_CREAT : 0) |
                              (in_.ConsumeBool() ? O_TRUNC : 0) | (in_.ConsumeBool() ? O_EXCL : 0);
        mode_t mode = in_.ConsumeIntegral<mode_t>();
        errno = 0;
        zcio_fd_t* f = zcio_open(c, p, flags, mode);
        checkFailure("zcio_open", f == nullptr, c == nullptr || p == nullptr);
        if (f != nullptr) fds_.push_back(f);
        break;
      }
      case 1: {
        zcio_fd_t* f = fd(&index);
        errno = 0;
        int r = zcio_close(f);
        checkFailure("zcio_close", r == -1, f == nullptr);
        if (f != nullptr) fds_.erase(fds_.begin() + static_cast<ptrdiff_t>(index));
        break;
      }
      case 2: {
        zcio_fd_t* f = fd(&index);
        errno = 0;
        checkFailure("zcio_fsync", zcio_fsync(f) == -1, f == nullptr);
        break;
      }
      case 3: {
        zcio_client_t* c = in_.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : client_;
        const char* p = path();
        struct stat st {};
        struct stat* out = in_.ConsumeIntegralInRange<int>(0, 15) == 0 ? nullptr : &st;
        errno = 0;
        checkFailure("zcio_stat", zcio_stat(c, p, out) == -1,
                     c == nullptr || p == nullptr || out == nullptr);
        break;
      }
      case 4:
      case 5:
        io();
        break;
      case 6: {
        zcio_fd_t* f = fd(&index);
        int a = in_.ConsumeIntegral<int>();
        int b = in_.ConsumeIntegral<int>();
        errno = 0;
        checkFailure("zcio_set_file_options", zcio_set_file_options(f, a, b) == -1, f == nullptr);
        break;
      }
      case 7: {
        zcio_client_t* c = in_.ConsumeBool() ? nullptr : client_;
        zcio_stats stats{};
        zcio_stats* out = in_.ConsumeBool() ? nullptr : &stats;
        errno = 0;
        checkFailure("zcio_get_stats", zcio_get_stats(c, out) == -1,
                     c == nullptr || out == nullptr);
        break;
      }
      case 8: {
        zcio_client_t* c = in_.ConsumeBool() ? nullptr : client_;
        buffer_.assign(4096, 'r');
        void* addr = in_.ConsumeBool() ? nullptr : buffer_.data();
        size_t length = in_.ConsumeIntegralInRange<size_t>(0, 4096);
        bool bad = c == nullptr || addr == nullptr || length == 0;
        errno = 0;
        checkFailure("zcio_register_memory", zcio_register_memory(c, addr, length) == -1, bad);
        errno = 0;
        checkFailure("zcio_deregister_memory", zcio_deregister_memory(c, addr, length) == -1, bad);
        break;
      }
      case 9: {
        const char* url = badUrl();
        zcio_options options;
        zcio_options_init(&options);
        int how = in_.ConsumeIntegralInRange<int>(0, 2);
        errno = 0;
        zcio_client_t* c = how == 0   ? zcio_connect(url)
                           : how == 1 ? zcio_connect_with(url, &options)
                                      : zcio_connect_with(h_.url.c_str(), nullptr);
        if (c != nullptr) fail("zcio_connect", "a wrong URL or NULL options connected");
        checkFailure("zcio_connect", true, how == 2 || url == nullptr);
        break;
      }
      case 10: {
        errno = 0;
        checkFailure("zcio_disconnect", zcio_disconnect(nullptr) == -1, true);
        zcio_options_init(nullptr);  // documented as a no-op
        break;
      }
    }
  }

  FuzzedDataProvider& in_;
  Harness& h_;
  zcio_client_t* client_ = nullptr;
  std::vector<zcio_fd_t*> fds_;
  std::string path_;
  std::vector<char> buffer_;
};

void checkServes(const Harness& h) {
  h.exported.checkConfined();
  zcio_client_t* c = zcio_connect(h.url.c_str());
  struct stat st {};
  if (c == nullptr || zcio_stat(c, std::string(fuzz::kProbeFile).c_str(), &st) != 0 ||
      st.st_size != static_cast<off_t>(fuzz::kProbeContents.size())) {
    fuzz::fuzzFail("the server no longer serves a plain stat");
  }
  (void)zcio_disconnect(c);
}

}  // namespace

// The server starts (and OpenSSL sets up, for HELLO's nonces) outside any
// input, so those one-time allocations never count as an input's leak.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  checkServes(harness());
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Harness& h = harness();
  if (++h.inputs % 64 == 0) checkServes(h);
  FuzzedDataProvider in(data, size);
  Session(in, h).run();
  return 0;
}
