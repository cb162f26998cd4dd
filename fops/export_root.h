// ExportRoot: the one directory a brick serves, and the only way to open
// anything beneath it. Every path is resolved by the kernel with openat2's
// RESOLVE_BENEATH (no "..", absolute path or symlink may leave the export;
// checked at each component, race-free), after a lexical check that gives a
// clear error for the obvious cases. Thread-safe (immutable after open).
#pragma once

#include <sys/stat.h>

#include <string>

#include "base/result.h"

namespace zcio::fops {

class ExportRoot {
 public:
  static Result<ExportRoot> open(const std::string& directory);
  ExportRoot(ExportRoot&& other) noexcept;
  ExportRoot& operator=(ExportRoot&&) = delete;
  ~ExportRoot();

  // A file descriptor for `path` (relative to the export), opened with
  // `flags` (O_* plus O_CLOEXEC) and `mode` (permission bits only: setuid,
  // setgid and sticky are dropped). Only regular files open for I/O, and
  // anything else is refused before it is opened.
  Result<int> openFile(const std::string& path, int flags, mode_t mode) const;
  Result<struct stat> statPath(const std::string& path) const;
  const std::string& directory() const { return directory_; }

 private:
  ExportRoot(int fd, std::string directory) : fd_(fd), directory_(std::move(directory)) {}
  Result<int> resolve(const std::string& path, int flags, mode_t mode) const;
  static Result<int> checkedRegular(int fd, const std::string& path);

  int fd_ = -1;
  std::string directory_;
};

// Lexical check: non-empty, relative, no NUL, no ".." component.
Result<void> checkRelativePath(const std::string& path);

}  // namespace zcio::fops
