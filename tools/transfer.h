// The CLI's transfer engine: reads or writes a whole file through a zcio
// Client with N calls in flight, measuring wall time, client CPU and the
// bytes zcio copied. Shared by `zcio read`, `zcio write` and `zcio demo`.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "fops/client.h"

namespace zcio::tools {

struct TransferOptions {
  fops::IoMode mode = fops::IoMode::kDirect;
  uint64_t block = 1024 * 1024;
  unsigned queue_depth = 8;
  bool whole_buffer = false;  // read into one file-sized buffer instead of a ring
  bool sha256 = false;
};

struct TransferReport {
  uint64_t bytes = 0;
  double seconds = 0;
  double cpu_seconds = 0;  // user+sys of this process during the transfer
  uint64_t bytes_copied = 0;
  uint64_t requests = 0;
  std::string sha256;  // hex, when asked for

  double mbPerSecond() const { return seconds > 0 ? bytes / 1e6 / seconds : 0; }
  double cpuNsPerKiB() const { return bytes > 0 ? cpu_seconds * 1e9 / (bytes / 1024.0) : 0; }
};

// Reads [0, size) of remote `fh`.
Result<TransferReport> readFile(fops::Client& client, fops::FileHandle fh, uint64_t size,
                                const TransferOptions& options);

// Writes `size` bytes to remote `fh`; `fill(offset, dst, length)` produces
// each block (from a local file or memory) before it is sent.
using BlockSource = std::function<Result<void>(uint64_t offset, std::byte* dst, size_t length)>;
Result<TransferReport> writeFile(fops::Client& client, fops::FileHandle fh, uint64_t size,
                                 const TransferOptions& options, const BlockSource& fill);

// Deterministic pseudo-random bytes for [offset, offset + length) of a
// synthetic file: every block differs, and any block can be regenerated.
void fillPattern(uint64_t offset, std::byte* dst, size_t length, uint64_t seed = 1);

// "1M", "64K", "4096", "1G" -> bytes.
Result<uint64_t> parseSize(const std::string& text);
std::string modeName(fops::IoMode mode);

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t length);
  std::string hex();

 private:
  void* ctx_;
};

}  // namespace zcio::tools
