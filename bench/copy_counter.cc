// copy_counter: an LD_PRELOAD interposer that counts the bytes a process copies with
// memcpy/memmove (and their _chk forms), so "bytes copied in user space" is checked from
// outside the program under test — zcio's own counter, gfapi (which has none) and the
// raw-socket pair alike.
//
//   ZCIO_COPY_COUNTER_OUT=/path/copies.jsonl LD_PRELOAD=.../libzcio-copy-counter.so PROGRAM
//
// At exit it appends one JSON line to that file:
//   {"pid":P,"calls":N,"bytes":B,"large_calls":n,"large_bytes":b}
// where "large" means one call of at least 4 KiB (payload-sized; the many small copies of
// headers and bookkeeping stay in calls/bytes). What it cannot see: copies the compiler
// inlined (constant small sizes), copies inside libc that do not go through the PLT, and
// the kernel's socket-to-user copy (which every path here pays once).
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr size_t kLarge = 4096;

using CopyFn = void* (*)(void*, const void*, size_t);

std::atomic<unsigned long long> g_calls{0};
std::atomic<unsigned long long> g_bytes{0};
std::atomic<unsigned long long> g_large_calls{0};
std::atomic<unsigned long long> g_large_bytes{0};

void count(size_t n) {
  g_calls.fetch_add(1, std::memory_order_relaxed);
  g_bytes.fetch_add(n, std::memory_order_relaxed);
  if (n >= kLarge) {
    g_large_calls.fetch_add(1, std::memory_order_relaxed);
    g_large_bytes.fetch_add(n, std::memory_order_relaxed);
  }
}

// Used only while dlsym resolves the real functions. The target is built with
// -fno-builtin -fno-tree-loop-distribute-patterns so this loop never becomes a memmove call.
void* byteMove(void* dst, const void* src, size_t n) {
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  if (d < s) {
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  } else {
    for (size_t i = n; i > 0; --i) d[i - 1] = s[i - 1];
  }
  return dst;
}

CopyFn resolve(const char* name) {
  static thread_local bool resolving = false;
  if (resolving) return byteMove;
  resolving = true;
  auto fn = reinterpret_cast<CopyFn>(dlsym(RTLD_NEXT, name));
  resolving = false;
  if (fn == nullptr) std::abort();  // no libc underneath: nothing sensible to do
  return fn;
}

CopyFn realMemcpy() {
  static CopyFn fn = resolve("memcpy");
  return fn;
}

CopyFn realMemmove() {
  static CopyFn fn = resolve("memmove");
  return fn;
}

__attribute__((destructor)) void report() {
  const char* path = std::getenv("ZCIO_COPY_COUNTER_OUT");
  if (path == nullptr) return;
  char line[256];
  const int n = std::snprintf(
      line, sizeof line,
      "{\"pid\":%d,\"calls\":%llu,\"bytes\":%llu,\"large_calls\":%llu,\"large_bytes\":%llu}\n",
      static_cast<int>(::getpid()), g_calls.load(), g_bytes.load(), g_large_calls.load(),
      g_large_bytes.load());
  const int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (n > 0) {
    [[maybe_unused]] ssize_t written = ::write(fd, line, static_cast<size_t>(n));
  }
  ::close(fd);
}

}  // namespace

extern "C" {

void* memcpy(void* dst, const void* src, size_t n) noexcept {
  count(n);
  return realMemcpy()(dst, src, n);
}

void* memmove(void* dst, const void* src, size_t n) noexcept {
  count(n);
  return realMemmove()(dst, src, n);
}

void* __memcpy_chk(void* dst, const void* src, size_t n, size_t /*dst_len*/) noexcept {
  count(n);
  return realMemcpy()(dst, src, n);
}

void* __memmove_chk(void* dst, const void* src, size_t n, size_t /*dst_len*/) noexcept {
  count(n);
  return realMemmove()(dst, src, n);
}

}  // extern "C"
