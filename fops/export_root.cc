#include "fops/export_root.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace zcio::fops {

Result<void> checkRelativePath(const std::string& path) {
  if (path.empty()) return makeError(EINVAL, "empty path");
  if (path.find('\0') != std::string::npos) return makeError(EINVAL, "path contains NUL");
  if (path.front() == '/') {
    return makeError(EPERM, "absolute path '" + path + "' is outside the export");
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    if (path.compare(start, end - start, "..") == 0) {
      return makeError(EPERM, "path '" + path + "' climbs out with '..'");
    }
    start = end + 1;
  }
  return okResult();
}

Result<ExportRoot> ExportRoot::open(const std::string& directory) {
  int fd = ::open(directory.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errnoError(("open export directory " + directory).c_str());
  return ExportRoot(fd, directory);
}

ExportRoot::ExportRoot(ExportRoot&& other) noexcept
    : fd_(other.fd_), directory_(std::move(other.directory_)) {
  other.fd_ = -1;
}

ExportRoot::~ExportRoot() {
  if (fd_ >= 0) ::close(fd_);
}

Result<int> ExportRoot::resolve(const std::string& path, int flags, mode_t mode) const {
  ZCIO_RETURN_IF_ERROR(checkRelativePath(path));
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  // Never setuid, setgid or sticky bits from a client (the brick applies its umask too).
  how.mode = (flags & O_CREAT) != 0 ? (mode & 0777) : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, fd_, path.c_str(), &how, sizeof how);
  if (fd < 0) {
    int err = errno;
    if (err == EXDEV) {
      return makeError(EPERM, "path '" + path + "' resolves outside the export");
    }
    if (err == ENOSYS) {
      return makeError(ENOSYS, "openat2 is not available (Linux >= 5.6 needed)");
    }
    return makeError(err, "open '" + path + "'");
  }
  return static_cast<int>(fd);
}

Result<int> ExportRoot::openFile(const std::string& path, int flags, mode_t mode) const {
  // Look before opening: an O_PATH descriptor opens nothing (no device
  // driver's open, no FIFO rendezvous, no O_TRUNC), so a node that is not a
  // regular file is refused before the client's flags ever reach it.
  for (int attempt = 0;; ++attempt) {
    auto probe = resolve(path, O_PATH, 0);
    if (!probe && probe.error().code == ENOENT && (flags & O_CREAT) != 0) {
      // A new name: O_CREAT makes a regular file, and O_EXCL keeps it from
      // opening a node planted since the probe (then we look again, once).
      auto fd = resolve(path, flags | O_EXCL | O_NONBLOCK | O_NOCTTY, mode);
      if (!fd && fd.error().code == EEXIST && (flags & O_EXCL) == 0 && attempt == 0) continue;
      if (!fd) return fd.error();
      return checkedRegular(*fd, path);
    }
    if (!probe) return probe.error();
    struct stat st {};
    if (::fstat(*probe, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(*probe);
      return makeError(EINVAL, "'" + path + "' is not a regular file");
    }
    if ((flags & O_CREAT) != 0 && (flags & O_EXCL) != 0) {
      ::close(*probe);
      return makeError(EEXIST, "create '" + path + "': it exists");
    }
    // Reopen exactly the inode just checked (not the name, which may have
    // changed since) through the descriptor's /proc link.
    std::string link = "/proc/self/fd/" + std::to_string(*probe);
    int fd =
        ::open(link.c_str(), (flags & ~(O_CREAT | O_EXCL)) | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int err = errno;
    ::close(*probe);
    if (fd < 0) return makeError(err, "open '" + path + "'");
    return checkedRegular(fd, path);
  }
}

Result<int> ExportRoot::checkedRegular(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return makeError(EINVAL, "'" + path + "' is not a regular file");
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

Result<struct stat> ExportRoot::statPath(const std::string& path) const {
  auto fd = resolve(path, O_PATH, 0);
  if (!fd) return fd.error();
  struct stat st {};
  int rc = ::fstat(*fd, &st);
  int err = errno;
  ::close(*fd);
  if (rc != 0) return makeError(err, "stat '" + path + "'");
  return st;
}

}  // namespace zcio::fops
