// raw_pair: the "raw-socket limit" peer that zcio's TCP read path is judged against.
//
// A minimal request/reply pair over loopback TCP, with nothing between the socket and
// the application buffer:
//   request: {u64 id, u64 offset, u64 length}          (24 bytes, little endian)
//   reply:   {u64 id, u64 payload_len} + payload        (16-byte header)
// The reader recv()s each payload straight into its final place in one big buffer, so it
// copies no payload bytes in user space ("bytes_copied":0).
//
//   raw_pair serve    --port P --file PATH [--threads 1]
//   raw_pair read     --port P --size BYTES --block B --qd N [--piece 65536] [--json]
//                     [--verify PATH] [--timeout-s 30]
//   raw_pair pingpong --port P [--block 4096] --iterations N [--warmup 100] [--json]
//                     [--timeout-s 30]
// Sizes accept K/M/G suffixes (binary). Exit: 0 ok, 1 runtime error, 2 usage error.
// Self-contained on purpose (libc/POSIX/STL only) so it measures the socket, not zcio.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

constexpr size_t kRequestSize = 24;
constexpr size_t kHeaderSize = 16;
// Server-side cap on one request's length; bounds the per-connection buffer.
constexpr uint64_t kMaxLength = 64ull << 20;
constexpr uint64_t kDefaultPiece = 65536;
constexpr uint64_t kDefaultTimeoutS = 30;
constexpr size_t kVerifyChunk = 1 << 20;

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& what) {
  throw Error(what);
}

[[noreturn]] void failErrno(const std::string& what) {
  const int err = errno;  // save before building strings
  if (err == EAGAIN || err == EWOULDBLOCK) fail(what + ": timed out (peer stuck?)");
  throw Error(what + ": " + std::strerror(err));
}

// Explicit byte order so the wire format does not depend on the host.
void storeLe64(unsigned char* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<unsigned char>(v >> (8 * i));
}
uint64_t loadLe64(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{p[i]} << (8 * i);
  return v;
}

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// ---- socket I/O helpers ----------------------------------------------------------------

// Reads exactly n bytes. Returns false only if eofOk and the peer closed before the first
// byte (a clean end between messages); any other EOF is an error, so a dead peer never
// leaves us waiting.
bool recvExact(int fd, void* buf, size_t n, bool eofOk, const char* what) {
  auto* p = static_cast<unsigned char*>(buf);
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::recv(fd, p + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r == 0) {
      if (got == 0 && eofOk) return false;
      fail(std::string(what) + ": connection closed by peer");
    } else if (errno != EINTR) {
      failErrno(std::string("recv ") + what);
    }
  }
  return true;
}

// The payload path under test: recv straight into the destination, at most `piece`
// bytes per call.
void recvPayload(int fd, unsigned char* dst, uint64_t len, uint64_t piece) {
  while (len > 0) {
    const ssize_t r = ::recv(fd, dst, std::min(len, piece), 0);
    if (r > 0) {
      dst += r;
      len -= static_cast<uint64_t>(r);
    } else if (r == 0) {
      fail("payload: connection closed by peer");
    } else if (errno != EINTR) {
      failErrno("recv payload");
    }
  }
}

void sendAll(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const unsigned char*>(buf);
  while (n > 0) {
    const ssize_t r = ::send(fd, p, n, MSG_NOSIGNAL);
    if (r >= 0) {
      p += r;
      n -= static_cast<size_t>(r);
    } else if (errno != EINTR) {
      failErrno("send");
    }
  }
}

// One writev loop for header + payload; advances the iovecs on partial writes.
void writevAll(int fd, iovec* iov, int count) {
  while (count > 0) {
    const ssize_t r = ::writev(fd, iov, count);
    if (r < 0) {
      if (errno == EINTR) continue;
      failErrno("writev");
    }
    auto left = static_cast<size_t>(r);
    while (count > 0 && left >= iov->iov_len) {
      left -= iov->iov_len;
      ++iov;
      --count;
    }
    if (count > 0) {
      iov->iov_base = static_cast<unsigned char*>(iov->iov_base) + left;
      iov->iov_len -= left;
    }
  }
}

void setNoDelay(int fd) {
  const int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) failErrno("TCP_NODELAY");
}

sockaddr_in loopbackAddr(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

// Client sockets get send/receive timeouts so a stuck (not just dead) peer ends the run.
Fd connectLoopback(uint16_t port, uint64_t timeoutS) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) failErrno("socket");
  const sockaddr_in addr = loopbackAddr(port);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    failErrno("connect 127.0.0.1:" + std::to_string(port));
  setNoDelay(fd.get());
  if (timeoutS > 0) {
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeoutS);
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
      failErrno("socket timeout");
  }
  return fd;
}

void sendRequest(int fd, uint64_t id, uint64_t offset, uint64_t length) {
  unsigned char req[kRequestSize];
  storeLe64(req, id);
  storeLe64(req + 8, offset);
  storeLe64(req + 16, length);
  sendAll(fd, req, sizeof req);
}

// ---- command line ------------------------------------------------------------------------

struct Args {
  std::map<std::string, std::string> values;
  std::set<std::string> flags;

  bool has(const std::string& name) const { return values.count(name) != 0; }
  bool flag(const std::string& name) const { return flags.count(name) != 0; }

  std::string str(const std::string& name) const {
    auto it = values.find(name);
    if (it == values.end()) throw UsageError("missing --" + name);
    return it->second;
  }

  // Unsigned number with optional binary K/M/G suffix, checked against [lo, hi].
  uint64_t num(const std::string& name, uint64_t lo, uint64_t hi) const {
    const std::string text = str(name);
    char* end = nullptr;
    errno = 0;
    uint64_t v = std::strtoull(text.c_str(), &end, 10);
    bool ok = errno == 0 && end != text.c_str() && text[0] != '-';
    int shift = 0;
    if (ok && *end != '\0') {
      switch (*end) {
        case 'K':
        case 'k':
          shift = 10;
          break;
        case 'M':
        case 'm':
          shift = 20;
          break;
        case 'G':
        case 'g':
          shift = 30;
          break;
        default:
          ok = false;
      }
      ok = ok && end[1] == '\0' && v <= (UINT64_MAX >> shift);
      v <<= shift;
    }
    if (!ok || v < lo || v > hi)
      throw UsageError("bad --" + name + " '" + text + "' (want " + std::to_string(lo) + ".." +
                       std::to_string(hi) + ")");
    return v;
  }
  uint64_t num(const std::string& name, uint64_t lo, uint64_t hi, uint64_t def) const {
    return has(name) ? num(name, lo, hi) : def;
  }
};

Args parseArgs(int argc, char** argv, const std::set<std::string>& valueNames,
               const std::set<std::string>& flagNames) {
  Args args;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + a + "'");
    const std::string name = a.substr(2);
    if (flagNames.count(name)) {
      args.flags.insert(name);
    } else if (valueNames.count(name)) {
      if (i + 1 >= argc) throw UsageError("--" + name + " needs a value");
      args.values[name] = argv[++i];
    } else {
      throw UsageError("unknown option '" + a + "'");
    }
  }
  return args;
}

// ---- serve -------------------------------------------------------------------------------

// Tracks open connections so a signal can shut them all down, waking blocked workers.
class ConnRegistry {
 public:
  bool add(int fd) {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    fds_.insert(fd);
    return true;
  }
  // Called before close(), so stopAll() never touches a closed or reused fd.
  void remove(int fd) {
    std::lock_guard lock(mu_);
    fds_.erase(fd);
  }
  void stopAll() {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (int fd : fds_) ::shutdown(fd, SHUT_RDWR);
  }
  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

 private:
  std::mutex mu_;
  std::set<int> fds_;
  bool stopping_ = false;
};

// Fills buf from the file; a short result means EOF.
size_t preadRange(int fileFd, unsigned char* buf, uint64_t length, uint64_t offset) {
  size_t got = 0;
  while (got < length) {
    const ssize_t r = ::pread(fileFd, buf + got, length - got, static_cast<off_t>(offset + got));
    if (r == 0) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      failErrno("pread");
    }
    got += static_cast<size_t>(r);
  }
  return got;
}

// Requests are handled strictly in order; the client's pipelining is absorbed by the
// socket buffers, which is all a single-threaded server needs.
void serveConnection(int fd, int fileFd) {
  std::vector<unsigned char> buf;  // grows to the largest length asked for, then reused
  unsigned char req[kRequestSize];
  unsigned char hdr[kHeaderSize];
  while (recvExact(fd, req, sizeof req, /*eofOk=*/true, "request")) {
    const uint64_t id = loadLe64(req);
    const uint64_t offset = loadLe64(req + 8);
    const uint64_t length = loadLe64(req + 16);
    if (length > kMaxLength) fail("request length " + std::to_string(length) + " over cap");
    if (offset > static_cast<uint64_t>(INT64_MAX) - length) fail("request offset out of range");
    if (buf.size() < length) buf.resize(length);
    const size_t got = preadRange(fileFd, buf.data(), length, offset);
    storeLe64(hdr, id);
    storeLe64(hdr + 8, got);
    iovec iov[2] = {{hdr, sizeof hdr}, {buf.data(), got}};
    writevAll(fd, iov, got > 0 ? 2 : 1);
  }
}

void acceptLoop(int listenFd, int fileFd, ConnRegistry& registry) {
  for (;;) {
    const int c = ::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) {
      if (registry.stopping()) return;  // listen socket shut down by the signal path
      if (errno == EINTR || errno == ECONNABORTED) continue;
      std::fprintf(stderr, "raw_pair: accept: %s\n", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // don't spin on EMFILE
      continue;
    }
    Fd conn(c);
    if (!registry.add(c)) return;
    try {
      setNoDelay(c);
      serveConnection(c, fileFd);
    } catch (const Error& e) {
      if (!registry.stopping()) std::fprintf(stderr, "raw_pair: connection: %s\n", e.what());
    }
    registry.remove(c);
  }
}

int runServe(const Args& args) {
  const auto port = static_cast<uint16_t>(args.num("port", 0, 65535));
  const std::string path = args.str("file");
  const uint64_t threads = args.num("threads", 1, 256, 1);

  // Block the signals before any thread exists: workers inherit the mask and the main
  // thread takes them synchronously with sigwait, so no handler races with I/O.
  sigset_t stopSignals;
  sigemptyset(&stopSignals);
  sigaddset(&stopSignals, SIGINT);
  sigaddset(&stopSignals, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &stopSignals, nullptr) != 0) fail("pthread_sigmask failed");
  // writev has no MSG_NOSIGNAL: a client vanishing mid-reply must be EPIPE, not death.
  std::signal(SIGPIPE, SIG_IGN);

  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) failErrno("open " + path);

  Fd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (listener.get() < 0) failErrno("socket");
  const int one = 1;
  if (::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    failErrno("SO_REUSEADDR");
  sockaddr_in addr = loopbackAddr(port);
  if (::bind(listener.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    failErrno("bind 127.0.0.1:" + std::to_string(port));
  if (::listen(listener.get(), 128) != 0) failErrno("listen");
  socklen_t len = sizeof addr;
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    failErrno("getsockname");
  std::printf("listening %u\n", unsigned{ntohs(addr.sin_port)});
  std::fflush(stdout);

  // Each worker accepts and serves one connection at a time; --threads bounds concurrency.
  ConnRegistry registry;
  std::vector<std::thread> workers;
  for (uint64_t i = 0; i < threads; ++i)
    workers.emplace_back(acceptLoop, listener.get(), file.get(), std::ref(registry));

  int sig = 0;
  sigwait(&stopSignals, &sig);
  registry.stopAll();
  ::shutdown(listener.get(), SHUT_RDWR);  // wakes workers blocked in accept (EINVAL)
  for (auto& w : workers) w.join();
  std::fprintf(stderr, "raw_pair: serve: %s, exiting\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  return 0;
}

// ---- read --------------------------------------------------------------------------------

uint64_t cpuNs() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& tv) {
    return static_cast<uint64_t>(tv.tv_sec) * 1'000'000'000ull +
           static_cast<uint64_t>(tv.tv_usec) * 1000ull;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

// Compares after timing, in chunks, so verification never needs a second full-size buffer.
bool verifyAgainstFile(const std::string& path, const unsigned char* data, uint64_t size) {
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (file.get() < 0) failErrno("open " + path);
  std::vector<unsigned char> chunk(kVerifyChunk);
  for (uint64_t off = 0; off < size; off += kVerifyChunk) {
    const uint64_t want = std::min<uint64_t>(kVerifyChunk, size - off);
    const size_t got = preadRange(file.get(), chunk.data(), want, off);
    if (got != want || std::memcmp(chunk.data(), data + off, want) != 0) {
      std::fprintf(stderr, "raw_pair: verify: mismatch in [%llu, %llu)%s\n",
                   static_cast<unsigned long long>(off),
                   static_cast<unsigned long long>(off + want),
                   got != want ? " (file shorter than --size)" : "");
      return false;
    }
  }
  return true;
}

int runRead(const Args& args) {
  const auto port = static_cast<uint16_t>(args.num("port", 1, 65535));
  const uint64_t size = args.num("size", 1, UINT64_MAX >> 1);
  const uint64_t block = args.num("block", 1, kMaxLength);
  const uint64_t qd = args.num("qd", 1, 65536);
  const uint64_t piece = args.num("piece", 1, kMaxLength, kDefaultPiece);
  const uint64_t timeoutS = args.num("timeout-s", 0, 86400, kDefaultTimeoutS);
  const bool json = args.flag("json");

  // Fault the destination in before timing: page-fault cost is not the transport's.
  auto dst = std::make_unique_for_overwrite<unsigned char[]>(size);
  std::memset(dst.get(), 0, size);

  Fd sock = connectLoopback(port, timeoutS);
  const int fd = sock.get();
  const uint64_t blocks = (size + block - 1) / block;
  std::vector<char> outstanding(blocks, 0);  // id == block index, so lookup is O(1)
  uint64_t nextId = 0;
  auto issue = [&] {
    const uint64_t off = nextId * block;
    sendRequest(fd, nextId, off, std::min(block, size - off));
    outstanding[nextId++] = 1;
  };

  const uint64_t cpu0 = cpuNs();
  const auto t0 = std::chrono::steady_clock::now();
  while (nextId < blocks && nextId < qd) issue();
  for (uint64_t done = 0; done < blocks; ++done) {
    unsigned char hdr[kHeaderSize];
    recvExact(fd, hdr, sizeof hdr, /*eofOk=*/false, "reply header");
    const uint64_t id = loadLe64(hdr);
    const uint64_t len = loadLe64(hdr + 8);
    if (id >= blocks || !outstanding[id]) fail("reply for unknown id " + std::to_string(id));
    const uint64_t off = id * block;
    const uint64_t want = std::min(block, size - off);
    if (len != want)
      fail("reply " + std::to_string(id) + " carries " + std::to_string(len) + " bytes, asked " +
           std::to_string(want) + (len < want ? " (file smaller than --size?)" : ""));
    recvPayload(fd, dst.get() + off, len, piece);
    outstanding[id] = 0;
    if (nextId < blocks) issue();
  }
  const auto t1 = std::chrono::steady_clock::now();
  const uint64_t cpu1 = cpuNs();

  const double seconds = std::chrono::duration<double>(t1 - t0).count();
  const double mbPerS = static_cast<double>(size) / 1e6 / seconds;
  const double cpuNsPerKib =
      static_cast<double>(cpu1 - cpu0) / (static_cast<double>(size) / 1024.0);
  // With --json, stdout carries only the JSON line; the human line goes to stderr.
  std::fprintf(json ? stderr : stdout,
               "raw read: %llu bytes in %.4f s = %.1f MB/s, client cpu %.1f ns/KiB "
               "(block %llu, qd %llu, piece %llu)\n",
               static_cast<unsigned long long>(size), seconds, mbPerS, cpuNsPerKib,
               static_cast<unsigned long long>(block), static_cast<unsigned long long>(qd),
               static_cast<unsigned long long>(piece));
  if (json)
    std::printf(
        "{\"tool\":\"raw\",\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f,"
        "\"cpu_ns_per_kib\":%.2f,\"bytes_copied\":0}\n",
        static_cast<unsigned long long>(size), seconds, mbPerS, cpuNsPerKib);
  std::fflush(stdout);

  if (args.has("verify")) {
    if (!verifyAgainstFile(args.str("verify"), dst.get(), size)) return 1;
    std::fprintf(stderr, "raw_pair: verify: ok\n");
  }
  return 0;
}

// ---- pingpong ----------------------------------------------------------------------------

// Nearest-rank percentile of sorted samples, in microseconds.
double percentileUs(const std::vector<uint64_t>& sortedNs, double p) {
  const auto n = sortedNs.size();
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  return static_cast<double>(sortedNs[rank - 1]) / 1000.0;
}

int runPingpong(const Args& args) {
  const auto port = static_cast<uint16_t>(args.num("port", 1, 65535));
  const uint64_t block = args.num("block", 1, kMaxLength, 4096);
  const uint64_t iterations = args.num("iterations", 1, 100'000'000);
  const uint64_t warmup = args.num("warmup", 0, 100'000'000, 100);  // untimed: warm caches/TCP
  const uint64_t piece = args.num("piece", 1, kMaxLength, kDefaultPiece);
  const uint64_t timeoutS = args.num("timeout-s", 0, 86400, kDefaultTimeoutS);
  const bool json = args.flag("json");

  Fd sock = connectLoopback(port, timeoutS);
  const int fd = sock.get();
  std::vector<unsigned char> buf(block);
  std::vector<uint64_t> latNs;
  latNs.reserve(iterations);

  for (uint64_t i = 0; i < warmup + iterations; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    sendRequest(fd, i, 0, block);
    unsigned char hdr[kHeaderSize];
    recvExact(fd, hdr, sizeof hdr, /*eofOk=*/false, "reply header");
    if (loadLe64(hdr) != i) fail("reply for unexpected id " + std::to_string(loadLe64(hdr)));
    if (loadLe64(hdr + 8) != block) fail("short reply (file smaller than --block?)");
    recvPayload(fd, buf.data(), block, piece);
    const auto t1 = std::chrono::steady_clock::now();
    if (i >= warmup)
      latNs.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
  }

  const double meanUs =
      static_cast<double>(std::accumulate(latNs.begin(), latNs.end(), uint64_t{0})) /
      static_cast<double>(latNs.size()) / 1000.0;
  std::sort(latNs.begin(), latNs.end());
  const double minUs = percentileUs(latNs, 0.0);
  const double medUs = percentileUs(latNs, 0.5);
  const double p99Us = percentileUs(latNs, 0.99);
  const double maxUs = percentileUs(latNs, 1.0);
  std::fprintf(json ? stderr : stdout,
               "raw pingpong: block %llu, %llu iterations: min %.2f us, median %.2f us, "
               "p99 %.2f us, max %.2f us\n",
               static_cast<unsigned long long>(block), static_cast<unsigned long long>(iterations),
               minUs, medUs, p99Us, maxUs);
  if (json)
    std::printf(
        "{\"tool\":\"raw\",\"block\":%llu,\"lat_us_min\":%.2f,\"lat_us_median\":%.2f,"
        "\"lat_us_p99\":%.2f,\"lat_us_max\":%.2f,\"lat_us_mean\":%.2f}\n",
        static_cast<unsigned long long>(block), minUs, medUs, p99Us, maxUs, meanUs);
  std::fflush(stdout);
  return 0;
}

constexpr const char* kUsage =
    "usage:\n"
    "  raw_pair serve    --port P --file PATH [--threads 1]\n"
    "  raw_pair read     --port P --size BYTES --block B --qd N [--piece 65536] [--json]\n"
    "                    [--verify PATH] [--timeout-s 30]\n"
    "  raw_pair pingpong --port P [--block 4096] --iterations N [--warmup 100] [--json]\n"
    "                    [--piece 65536] [--timeout-s 30]\n"
    "sizes accept K/M/G suffixes; --timeout-s 0 disables the client socket timeout\n";

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw UsageError("missing mode");
    const std::string mode = argv[1];
    if (mode == "serve") return runServe(parseArgs(argc, argv, {"port", "file", "threads"}, {}));
    if (mode == "read")
      return runRead(parseArgs(
          argc, argv, {"port", "size", "block", "qd", "piece", "verify", "timeout-s"}, {"json"}));
    if (mode == "pingpong")
      return runPingpong(parseArgs(
          argc, argv, {"port", "block", "iterations", "warmup", "piece", "timeout-s"}, {"json"}));
    if (mode == "-h" || mode == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    throw UsageError("unknown mode '" + mode + "'");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "raw_pair: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_pair: error: %s\n", e.what());
    return 1;
  }
}
