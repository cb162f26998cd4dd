// gfapi_read: the GlusterFS peer — reads a file of a GlusterFS volume through libgfapi
// (the library zcio's idea comes from) and reports what `zcio read --json` reports.
//
//   gfapi_read read  --volume V --path /FILE [--host 127.0.0.1] [--port 24007]
//                    [--size BYTES] [--block 1M] [--qd 8] [--engine async|threads]
//                    [--json] [--log PATH] [--no-fini]
//   gfapi_read write --volume V --path /FILE --size BYTES [--block 1M] [--json] [--log PATH]
//                    [--no-fini]
//
// read: one file-sized destination buffer (faulted in before timing, as zcio read --whole
// and zcio-raw-pair do), N calls in flight, each a glfs_preadv of one block straight into
// its final place:
//   --engine async    N glfs_preadv_async calls outstanding; the callback (on a gfapi
//                     thread) hands the completion to the issuing thread, which issues
//                     the next block (the shape of zcio's async client);
//   --engine threads  N threads, each issuing synchronous glfs_preadv on the shared fd.
// With --qd 1 both engines are one synchronous glfs_preadv at a time on the caller.
// write: creates FILE with glfs_creat and fills it with glfs_pwrite, one block at a time
// (how the benchmark puts a file on the volume; its rate is reported too).
//
// Client CPU is getrusage(RUSAGE_SELF) user+sys across the transfer, so gfapi's own
// threads (epoll, syncenv) are included, as zcio's io thread is for zcio.
// "bytes_copied" is null: gfapi has no counter for the copy it makes from its reply
// buffers into the caller's iov, so it cannot be reported from inside.
// --no-fini: exit without glfs_fini once the result is printed. glfs_fini took ~10 s per
// process on Debian's 10.3 here (after the transfer, so it never shows in the figures, but it
// dominates a benchmark that starts many clients); the kernel closes the sockets at exit.
// Sizes accept K/M/G suffixes (binary). Exit: 0 ok, 1 runtime error, 2 usage error.

#include <fcntl.h>
#include <glusterfs/api/glfs.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kLogLevelError = 4;  // GF_LOG_ERROR; gfapi's header does not export the enum
constexpr uint64_t kMaxBlock = 64ull << 20;

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void failErrno(const std::string& what, int err) {
  throw Error(what + ": " + std::strerror(err));
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
  std::string str(const std::string& name, const std::string& def) const {
    return has(name) ? str(name) : def;
  }

  // Unsigned number with an optional binary K/M/G suffix, checked against [lo, hi].
  uint64_t num(const std::string& name, uint64_t lo, uint64_t hi) const {
    const std::string text = str(name);
    char* end = nullptr;
    errno = 0;
    uint64_t v = std::strtoull(text.c_str(), &end, 10);
    bool ok = errno == 0 && end != text.c_str() && text[0] != '-';
    if (ok && *end != '\0') {
      const std::string suffixes = "KkMmGg";
      const auto at = suffixes.find(*end);
      const int shift = at == std::string::npos ? 0 : 10 * static_cast<int>(at / 2 + 1);
      ok = shift != 0 && end[1] == '\0' && v <= (UINT64_MAX >> shift);
      v <<= shift;
    }
    if (!ok || v < lo || v > hi) {
      throw UsageError("bad --" + name + " '" + text + "' (want " + std::to_string(lo) + ".." +
                       std::to_string(hi) + ")");
    }
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

// ---- gfapi owners ------------------------------------------------------------------------

struct VolumeDeleter {
  void operator()(glfs_t* fs) const {
    if (glfs_fini(fs) != 0) std::fprintf(stderr, "gfapi_read: glfs_fini failed\n");
  }
};
using Volume = std::unique_ptr<glfs_t, VolumeDeleter>;

struct FileDeleter {
  void operator()(glfs_fd_t* fd) const {
    if (glfs_close(fd) != 0) {
      std::fprintf(stderr, "gfapi_read: glfs_close: %s\n", std::strerror(errno));
    }
  }
};
using File = std::unique_ptr<glfs_fd_t, FileDeleter>;

Volume connectVolume(const Args& args) {
  const std::string volume = args.str("volume");
  const std::string host = args.str("host", "127.0.0.1");
  const auto port = static_cast<int>(args.num("port", 1, 65535, 24007));
  Volume fs(glfs_new(volume.c_str()));
  if (!fs) failErrno("glfs_new " + volume, errno);
  if (glfs_set_volfile_server(fs.get(), "tcp", host.c_str(), port) != 0) {
    failErrno("glfs_set_volfile_server", errno);
  }
  const std::string log = args.str("log", "/dev/stderr");
  if (glfs_set_logging(fs.get(), log.c_str(), kLogLevelError) != 0) {
    failErrno("glfs_set_logging " + log, errno);
  }
  if (glfs_init(fs.get()) != 0) {
    failErrno("glfs_init (volume " + volume + " at " + host + ":" + std::to_string(port) + ")",
              errno);
  }
  return fs;
}

uint64_t cpuNs() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& tv) {
    return static_cast<uint64_t>(tv.tv_sec) * 1'000'000'000ull +
           static_cast<uint64_t>(tv.tv_usec) * 1000ull;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

struct Report {
  const char* op;
  std::string engine;
  uint64_t block;
  uint64_t qd;
  uint64_t bytes;
  uint64_t requests;
  double seconds;
  uint64_t cpu_ns;
};

void printReport(const Report& r, bool json) {
  const double mbPerS = static_cast<double>(r.bytes) / 1e6 / r.seconds;
  const double cpuNsPerKib =
      static_cast<double>(r.cpu_ns) / (static_cast<double>(r.bytes) / 1024.0);
  if (json) {
    std::printf(
        "{\"tool\":\"gfapi\",\"op\":\"%s\",\"engine\":\"%s\",\"block\":%llu,\"qd\":%llu,"
        "\"bytes\":%llu,\"seconds\":%.6f,\"mb_per_s\":%.1f,\"cpu_ns_per_kib\":%.1f,"
        "\"bytes_copied\":null,\"requests\":%llu}\n",
        r.op, r.engine.c_str(), static_cast<unsigned long long>(r.block),
        static_cast<unsigned long long>(r.qd), static_cast<unsigned long long>(r.bytes), r.seconds,
        mbPerS, cpuNsPerKib, static_cast<unsigned long long>(r.requests));
  } else {
    std::printf(
        "gfapi %s (%s, block %llu, qd %llu): %llu bytes in %.3f s = %.1f MB/s, "
        "client CPU %.1f ns/KiB, bytes copied: not counted by gfapi\n",
        r.op, r.engine.c_str(), static_cast<unsigned long long>(r.block),
        static_cast<unsigned long long>(r.qd), static_cast<unsigned long long>(r.bytes), r.seconds,
        mbPerS, cpuNsPerKib);
  }
  std::fflush(stdout);
}

// ---- read engines ------------------------------------------------------------------------

// Everything a read engine needs; blocks are [i * block, min((i+1) * block, size)).
struct ReadJob {
  glfs_fd_t* fd;
  unsigned char* dst;
  uint64_t size;
  uint64_t block;
  uint64_t blocks() const { return (size + block - 1) / block; }
  uint64_t length(uint64_t i) const { return std::min(block, size - i * block); }
};

void checkRead(ssize_t got, uint64_t want, uint64_t offset) {
  if (got < 0) failErrno("glfs_preadv at " + std::to_string(offset), errno);
  if (static_cast<uint64_t>(got) != want) {
    throw Error("glfs_preadv at " + std::to_string(offset) + " returned " + std::to_string(got) +
                " of " + std::to_string(want) + " bytes (file smaller than --size?)");
  }
}

void readOneBlock(const ReadJob& job, uint64_t i) {
  iovec iov{job.dst + i * job.block, job.length(i)};
  const auto offset = static_cast<off_t>(i * job.block);
  checkRead(glfs_preadv(job.fd, &iov, 1, offset, 0), iov.iov_len, i * job.block);
}

void readSync(const ReadJob& job) {
  for (uint64_t i = 0; i < job.blocks(); ++i) readOneBlock(job, i);
}

// N threads share a block counter; each issues synchronous calls.
void readThreads(const ReadJob& job, uint64_t qd) {
  std::atomic<uint64_t> next{0};
  std::mutex mu;
  std::string firstError;
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < qd; ++t) {
    threads.emplace_back([&] {
      try {
        for (uint64_t i = next.fetch_add(1); i < job.blocks(); i = next.fetch_add(1)) {
          readOneBlock(job, i);
        }
      } catch (const Error& e) {
        next.store(job.blocks());  // stop the others early
        std::lock_guard lock(mu);
        if (firstError.empty()) firstError = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  if (!firstError.empty()) throw Error(firstError);
}

// The async engine's completions travel from gfapi's callback thread to the issuer.
class CompletionQueue {
 public:
  struct Done {
    uint64_t block;
    ssize_t result;
    int err;
  };
  void push(Done d) {
    {
      std::lock_guard lock(mu_);
      done_.push_back(d);
    }
    cv_.notify_one();
  }
  Done pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return !done_.empty(); });
    Done d = done_.front();
    done_.pop_front();
    return d;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Done> done_;
};

struct AsyncSlot {
  CompletionQueue* queue;
  uint64_t block;
  iovec iov;
};

// `struct` is needed: glfs_stat is also the name of a gfapi function.
void onReadDone(glfs_fd_t*, ssize_t ret, struct glfs_stat*, struct glfs_stat*, void* data) {
  auto* slot = static_cast<AsyncSlot*>(data);
  slot->queue->push({slot->block, ret, ret < 0 ? errno : 0});
}

void readAsync(const ReadJob& job, uint64_t qd) {
  CompletionQueue queue;
  // One slot per block keeps each slot alive until its callback ran, even on error.
  std::vector<AsyncSlot> slots(job.blocks());
  uint64_t issued = 0;
  uint64_t inFlight = 0;
  auto issue = [&] {
    const uint64_t i = issued++;
    slots[i] = {&queue, i, {job.dst + i * job.block, job.length(i)}};
    if (glfs_preadv_async(job.fd, &slots[i].iov, 1, static_cast<off_t>(i * job.block), 0,
                          onReadDone, &slots[i]) != 0) {
      failErrno("glfs_preadv_async at " + std::to_string(i * job.block), errno);
    }
    ++inFlight;
  };
  std::string firstError;
  while (issued < job.blocks() && issued < qd) issue();
  while (inFlight > 0) {
    const CompletionQueue::Done d = queue.pop();
    --inFlight;
    if (d.result < 0) errno = d.err;
    try {
      checkRead(d.result, job.length(d.block), d.block * job.block);
    } catch (const Error& e) {
      if (firstError.empty()) firstError = e.what();
    }
    // After an error, drain what is in flight (its slots must outlive the callbacks).
    if (firstError.empty() && issued < job.blocks()) issue();
  }
  if (!firstError.empty()) throw Error(firstError);
}

int runRead(const Args& args) {
  const std::string path = args.str("path");
  const uint64_t block = args.num("block", 1, kMaxBlock, 1 << 20);
  const uint64_t qd = args.num("qd", 1, 1024, 8);
  const std::string engine = args.str("engine", "async");
  if (engine != "async" && engine != "threads") throw UsageError("--engine async|threads");
  const bool json = args.flag("json");

  Volume fs = connectVolume(args);
  File fd(glfs_open(fs.get(), path.c_str(), O_RDONLY));
  if (!fd) failErrno("glfs_open " + path, errno);
  uint64_t size = 0;
  if (args.has("size")) {
    size = args.num("size", 1, UINT64_MAX >> 1);
  } else {
    struct stat st {};
    if (glfs_fstat(fd.get(), &st) != 0) failErrno("glfs_fstat " + path, errno);
    size = static_cast<uint64_t>(st.st_size);
    if (size == 0) throw Error(path + " is empty");
  }

  // Fault the destination in before timing: page-fault cost is not the transport's.
  auto dst = std::make_unique_for_overwrite<unsigned char[]>(size);
  std::memset(dst.get(), 0, size);
  const ReadJob job{fd.get(), dst.get(), size, block};

  const uint64_t cpu0 = cpuNs();
  const auto t0 = std::chrono::steady_clock::now();
  if (qd == 1) {
    readSync(job);
  } else if (engine == "threads") {
    readThreads(job, qd);
  } else {
    readAsync(job, qd);
  }
  const auto t1 = std::chrono::steady_clock::now();
  const uint64_t cpu1 = cpuNs();
  printReport({"read", qd == 1 ? "sync" : engine, block, qd, size, job.blocks(),
               std::chrono::duration<double>(t1 - t0).count(), cpu1 - cpu0},
              json);
  fd.reset();
  if (args.flag("no-fini")) (void)fs.release();
  return 0;
}

// ---- write -------------------------------------------------------------------------------

// Pseudo-random bytes (xorshift64), different in every block.
void fillBlock(unsigned char* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, std::min<size_t>(8, n - i));
  }
}

int runWrite(const Args& args) {
  const std::string path = args.str("path");
  const uint64_t size = args.num("size", 1, UINT64_MAX >> 1);
  const uint64_t block = args.num("block", 1, kMaxBlock, 1 << 20);
  const bool json = args.flag("json");

  Volume fs = connectVolume(args);
  File fd(glfs_creat(fs.get(), path.c_str(), O_WRONLY | O_TRUNC, 0644));
  if (!fd) failErrno("glfs_creat " + path, errno);
  std::vector<unsigned char> buf(block);
  uint64_t cpuNsTotal = 0;
  std::chrono::duration<double> elapsed{0};
  uint64_t requests = 0;
  for (uint64_t off = 0; off < size; off += block) {
    const uint64_t n = std::min(block, size - off);
    fillBlock(buf.data(), n, off / block);  // not timed: data generation is not the transport
    const uint64_t cpu0 = cpuNs();
    const auto t0 = std::chrono::steady_clock::now();
    const ssize_t r =
        glfs_pwrite(fd.get(), buf.data(), n, static_cast<off_t>(off), 0, nullptr, nullptr);
    elapsed += std::chrono::steady_clock::now() - t0;
    cpuNsTotal += cpuNs() - cpu0;
    if (r < 0) failErrno("glfs_pwrite at " + std::to_string(off), errno);
    if (static_cast<uint64_t>(r) != n) throw Error("short glfs_pwrite at " + std::to_string(off));
    ++requests;
  }
  if (glfs_fsync(fd.get(), nullptr, nullptr) != 0) failErrno("glfs_fsync " + path, errno);
  printReport({"write", "sync", block, 1, size, requests, elapsed.count(), cpuNsTotal}, json);
  fd.reset();
  if (args.flag("no-fini")) (void)fs.release();
  return 0;
}

constexpr const char* kUsage =
    "usage:\n"
    "  gfapi_read read  --volume V --path /FILE [--host 127.0.0.1] [--port 24007]\n"
    "                   [--size BYTES] [--block 1M] [--qd 8] [--engine async|threads]\n"
    "                   [--json] [--log PATH] [--no-fini]\n"
    "  gfapi_read write --volume V --path /FILE --size BYTES [--block 1M] [--json]\n"
    "                   [--log PATH] [--no-fini]\n"
    "sizes accept K/M/G suffixes\n";

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2) throw UsageError("missing mode");
    const std::string mode = argv[1];
    const std::set<std::string> common = {"volume", "path", "host", "port", "block", "log"};
    if (mode == "read") {
      std::set<std::string> names = common;
      names.insert({"size", "qd", "engine"});
      return runRead(parseArgs(argc, argv, names, {"json", "no-fini"}));
    }
    if (mode == "write") {
      std::set<std::string> names = common;
      names.insert("size");
      return runWrite(parseArgs(argc, argv, names, {"json", "no-fini"}));
    }
    if (mode == "-h" || mode == "--help") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    throw UsageError("unknown mode '" + mode + "'");
  } catch (const UsageError& e) {
    std::fprintf(stderr, "gfapi_read: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gfapi_read: error: %s\n", e.what());
    return 1;
  }
}
