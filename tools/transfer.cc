#include "tools/transfer.h"

#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <random>
#include <vector>

namespace zcio::tools {
namespace {

double cpuNow() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto sec = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return sec(ru.ru_utime) + sec(ru.ru_stime);
}

// Page-aligned, pre-faulted memory so page faults are not timed.
class Buffer {
 public:
  explicit Buffer(size_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    data_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~Buffer() {
    if (data_ != nullptr) munmap(data_, size_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  std::byte* data() const { return data_; }
  bool ok() const { return size_ == 0 || data_ != nullptr; }

 private:
  std::byte* data_ = nullptr;
  size_t size_;
};

// Completion bookkeeping shared with the transport thread.
struct Pipeline {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<int> state;  // per slot: 0 idle, 1 in flight, 2 done
  std::vector<Result<size_t>> results;
  explicit Pipeline(unsigned depth) : state(depth, 0), results(depth, Result<size_t>(size_t{0})) {}

  fops::Client::IoCallback completer(unsigned slot) {
    return [this, slot](Result<size_t> r) {
      std::lock_guard lock(mutex);
      results[slot] = std::move(r);
      state[slot] = 2;
      cv.notify_all();
    };
  }
  Result<size_t> wait(unsigned slot) {
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return state[slot] == 2; });
    state[slot] = 0;
    return std::move(results[slot]);
  }
};

// Lanes: `depth` independent chains of calls; a lane that completes takes the
// next block (so a ring slot is only reused by its own lane).
template <typename Destination>
Result<uint64_t> readUnordered(fops::Client& client, fops::FileHandle fh, uint64_t size,
                               uint64_t block, unsigned depth, const TransferOptions& o,
                               Destination destination) {
  uint64_t blocks = (size + block - 1) / block;
  struct Shared {
    std::mutex mutex;
    std::condition_variable cv;
    uint64_t next = 0;
    unsigned running = 0;
    uint64_t bytes = 0;
    std::optional<Error> error;
  } shared;
  std::function<void(unsigned, uint64_t)> issue = [&](unsigned lane, uint64_t index) {
    uint64_t offset = index * block;
    size_t length = static_cast<size_t>(std::min(block, size - offset));
    std::byte* dst = o.whole_buffer ? destination(index) : destination(lane);
    iovec iov{dst, length};
    client.preadvAsync(fh, {&iov, 1}, offset, o.mode, [&, lane, length](Result<size_t> n) {
      std::unique_lock lock(shared.mutex);
      if (!n && !shared.error) shared.error = n.error();
      if (n && *n != length && !shared.error) {
        shared.error = makeError(EIO, "short read (file changed size?)");
      }
      if (n) shared.bytes += *n;
      if (!shared.error && shared.next < blocks) {
        uint64_t mine = shared.next++;
        lock.unlock();
        issue(lane, mine);
        return;
      }
      if (--shared.running == 0) shared.cv.notify_all();
    });
  };
  const auto lanes = static_cast<unsigned>(std::min<uint64_t>(blocks, depth));
  {
    std::lock_guard lock(shared.mutex);
    shared.running = lanes;
    shared.next = lanes;
  }
  // Bounded by `lanes`, never by shared.running: completions (on the
  // transport's thread) lower running while this loop is still issuing, and
  // a lane left unissued is a call that never completes, so the wait below
  // would never end and no call timeout could end it.
  for (unsigned lane = 0; lane < lanes; ++lane) issue(lane, lane);
  std::unique_lock lock(shared.mutex);
  shared.cv.wait(lock, [&] { return shared.running == 0; });
  if (shared.error) return *shared.error;
  return shared.bytes;
}

}  // namespace

Result<TransferReport> readFile(fops::Client& client, fops::FileHandle fh, uint64_t size,
                                const TransferOptions& o) {
  unsigned depth = std::max(1u, o.queue_depth);
  uint64_t block = std::max<uint64_t>(1, o.block);
  Buffer memory(o.whole_buffer ? size : block * depth);
  if (!memory.ok()) return makeError(ENOMEM, "cannot allocate the read buffer");
  auto destination = [&](uint64_t index) {
    return memory.data() + (o.whole_buffer ? index * block : (index % depth) * block);
  };
  uint64_t blocks = (size + block - 1) / block;
  Pipeline pipe(depth);
  Sha256 sha;
  TransferReport report;
  auto before = client.stats();
  double cpu0 = cpuNow();
  auto t0 = std::chrono::steady_clock::now();

  if (!o.sha256) {
    // Nothing consumes the data in order, so each completion issues the next
    // block itself, on the transport's thread (as an HPC code's progress loop
    // would); this thread only waits for the end.
    auto result = readUnordered(client, fh, size, block, depth, o, destination);
    if (!result) return result.error();
    report.bytes = *result;
    report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report.cpu_seconds = cpuNow() - cpu0;
    auto after = client.stats();
    report.bytes_copied = after.bytes_copied - before.bytes_copied;
    report.requests = after.requests - before.requests;
    return report;
  }
  auto issue = [&](uint64_t index) {
    unsigned slot = static_cast<unsigned>(index % depth);
    uint64_t offset = index * block;
    iovec iov{destination(index), static_cast<size_t>(std::min(block, size - offset))};
    pipe.state[slot] = 1;
    client.preadvAsync(fh, {&iov, 1}, offset, o.mode, pipe.completer(slot));
  };
  for (uint64_t i = 0; i < std::min<uint64_t>(blocks, depth); ++i) issue(i);
  // Consume in order (the digest needs it); refill each slot as it drains.
  for (uint64_t i = 0; i < blocks; ++i) {
    unsigned slot = static_cast<unsigned>(i % depth);
    auto n = pipe.wait(slot);
    if (!n) {
      for (uint64_t j = i + 1; j < std::min(blocks, i + depth); ++j) (void)pipe.wait(j % depth);
      return n.error();
    }
    uint64_t expected = std::min(block, size - i * block);
    if (*n != expected) {
      for (uint64_t j = i + 1; j < std::min(blocks, i + depth); ++j) (void)pipe.wait(j % depth);
      return makeError(
          EIO, "short read at offset " + std::to_string(i * block) + " (file changed size?)");
    }
    if (o.sha256) sha.update(destination(i), *n);
    report.bytes += *n;
    if (i + depth < blocks) issue(i + depth);
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.cpu_seconds = cpuNow() - cpu0;
  auto after = client.stats();
  report.bytes_copied = after.bytes_copied - before.bytes_copied;
  report.requests = after.requests - before.requests;
  if (o.sha256) report.sha256 = sha.hex();
  return report;
}

Result<TransferReport> writeFile(fops::Client& client, fops::FileHandle fh, uint64_t size,
                                 const TransferOptions& o, const BlockSource& fill) {
  unsigned depth = std::max(1u, o.queue_depth);
  uint64_t block = std::max<uint64_t>(1, o.block);
  Buffer memory(block * depth);
  if (!memory.ok()) return makeError(ENOMEM, "cannot allocate the write buffer");
  uint64_t blocks = (size + block - 1) / block;
  Pipeline pipe(depth);
  Sha256 sha;
  TransferReport report;
  auto before = client.stats();
  double cpu0 = cpuNow();
  auto t0 = std::chrono::steady_clock::now();

  auto issue = [&](uint64_t index) -> Result<void> {
    unsigned slot = static_cast<unsigned>(index % depth);
    uint64_t offset = index * block;
    size_t length = static_cast<size_t>(std::min(block, size - offset));
    std::byte* src = memory.data() + slot * block;
    ZCIO_RETURN_IF_ERROR(fill(offset, src, length));
    if (o.sha256) sha.update(src, length);
    iovec iov{src, length};
    pipe.state[slot] = 1;
    client.pwritevAsync(fh, {&iov, 1}, offset, o.mode, pipe.completer(slot));
    return okResult();
  };
  Result<void> failure = okResult();
  uint64_t issued = 0;
  for (; issued < std::min<uint64_t>(blocks, depth) && failure.ok(); ++issued)
    failure = issue(issued);
  for (uint64_t i = 0; i < issued; ++i) {
    auto n = pipe.wait(static_cast<unsigned>(i % depth));
    if (!n && failure.ok()) failure = n.error();
    if (n) report.bytes += *n;
    if (failure.ok() && issued < blocks) failure = issue(issued++);
  }
  if (!failure) return failure.error();
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.cpu_seconds = cpuNow() - cpu0;
  auto after = client.stats();
  report.bytes_copied = after.bytes_copied - before.bytes_copied;
  report.requests = after.requests - before.requests;
  if (o.sha256) report.sha256 = sha.hex();
  return report;
}

void fillPattern(uint64_t offset, std::byte* dst, size_t length, uint64_t seed) {
  std::mt19937_64 rng(offset * 0x9e3779b97f4a7c15ull + seed);
  size_t i = 0;
  for (; i + 8 <= length; i += 8) {
    uint64_t v = rng();
    std::memcpy(dst + i, &v, 8);
  }
  for (; i < length; ++i) dst[i] = static_cast<std::byte>(rng());
}

Result<uint64_t> parseSize(const std::string& text) {
  uint64_t value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr == text.data()) return makeError(EINVAL, "bad size '" + text + "'");
  std::string suffix(ptr, text.data() + text.size());
  uint64_t scale = 1;
  if (suffix.empty() || suffix == "B")
    scale = 1;
  else if (suffix == "K" || suffix == "KiB" || suffix == "k")
    scale = 1ull << 10;
  else if (suffix == "M" || suffix == "MiB")
    scale = 1ull << 20;
  else if (suffix == "G" || suffix == "GiB")
    scale = 1ull << 30;
  else
    return makeError(EINVAL, "bad size suffix in '" + text + "' (use K, M or G)");
  return value * scale;
}

std::string modeName(fops::IoMode mode) {
  return mode == fops::IoMode::kDirect ? "direct" : "regular";
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  EVP_DigestInit_ex(static_cast<EVP_MD_CTX*>(ctx_), EVP_sha256(), nullptr);
}
Sha256::~Sha256() {
  EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(ctx_));
}
void Sha256::update(const void* data, size_t length) {
  EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(ctx_), data, length);
}
std::string Sha256::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(ctx_), digest, &n);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(kHex[digest[i] >> 4]);
    out.push_back(kHex[digest[i] & 15]);
  }
  return out;
}

}  // namespace zcio::tools
