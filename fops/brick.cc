#include "fops/brick.h"

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <climits>
#include <cstring>
#include <optional>
#include <unordered_map>

#include "base/log.h"

namespace zcio::fops {
namespace {

namespace pb = rpc::pb;

int toOpenFlags(uint32_t wire) {
  bool read = (wire & pb::OPEN_READ) != 0;
  bool write = (wire & pb::OPEN_WRITE) != 0;
  int flags = read && write ? O_RDWR : write ? O_WRONLY : O_RDONLY;
  if ((wire & pb::OPEN_CREATE) != 0) flags |= O_CREAT;
  if ((wire & pb::OPEN_TRUNCATE) != 0) flags |= O_TRUNC;
  if ((wire & pb::OPEN_EXCLUSIVE) != 0) flags |= O_EXCL;
  return flags;
}

void fillAttr(const struct stat& st, pb::Attr* attr) {
  attr->set_size(static_cast<uint64_t>(st.st_size));
  attr->set_mode(st.st_mode);
  attr->set_mtime_ns(static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec);
  attr->set_ino(st.st_ino);
}

rpc::OutgoingReply failed(const Error& error) {
  return rpc::errorReply(error.code, error.what);
}

// The kernel's own limit, checked first so the reply never quotes the path.
std::optional<rpc::OutgoingReply> pathTooLong(const std::string& path) {
  if (path.size() < PATH_MAX) return std::nullopt;
  return rpc::errorReply(ENAMETOOLONG, "path of " + std::to_string(path.size()) +
                                           " bytes exceeds PATH_MAX - 1 (" +
                                           std::to_string(PATH_MAX - 1) + ")");
}

class BrickSession final : public rpc::ServerSession {
 public:
  BrickSession(const Brick& brick, std::string peer) : brick_(brick), peer_(std::move(peer)) {}

  ~BrickSession() override {
    for (auto& [fh, fd] : files_) ::close(fd);
  }

  Result<rpc::OutgoingReply> handle(rpc::IncomingCall call) override {
    const pb::Call& c = call.header;
    if (c.write_chunks_size() > 0 || c.read_chunks_size() > 0) {
      return logged(
          rpc::errorReply(EPROTONOSUPPORT, "RDMA chunk lists are not valid on this transport"));
    }
    if (c.op() != pb::OP_WRITE && call.payload.totalLength() != 0) {
      return logged(rpc::errorReply(EINVAL, "payload sent with a call that takes none"));
    }
    rpc::OutgoingReply reply = dispatch(c, call.payload);
    if (reply.header.error() != 0 && c.op() != pb::OP_OPEN) {  // open logs its own
      ZCIO_LOG(kInfo, peer_, ": op ", static_cast<int>(c.op()), " failed: ", reply.header.message(),
               " (", std::strerror(reply.header.error()), ")");
    }
    return reply;
  }

 private:
  rpc::OutgoingReply dispatch(const pb::Call& c, const iobuf::IoBufVector& payload) {
    switch (c.op()) {
      case pb::OP_OPEN:
        return open(c);
      case pb::OP_STAT:
        return stat(c);
      case pb::OP_FSTAT:
        return fstat(c);
      case pb::OP_READ:
        return read(c);
      case pb::OP_WRITE:
        return write(c, payload);
      case pb::OP_FSYNC:
        return fsync(c);
      case pb::OP_CLOSE:
        return close(c);
      default:
        return rpc::errorReply(ENOSYS, "unknown op " + std::to_string(static_cast<int>(c.op())));
    }
  }

  rpc::OutgoingReply logged(rpc::OutgoingReply reply) {
    ZCIO_LOG(kInfo, peer_, ": call refused: ", reply.header.message());
    return reply;
  }

  Result<int> fdOf(uint64_t fh) const {
    auto it = files_.find(fh);
    if (it == files_.end()) return makeError(EBADF, "unknown file handle " + std::to_string(fh));
    return it->second;
  }

  rpc::OutgoingReply open(const pb::Call& c) {
    if (auto refused = pathTooLong(c.path())) return *refused;
    if (files_.size() >= brick_.options().max_open_files) {
      return rpc::errorReply(EMFILE, "too many open files on this connection");
    }
    constexpr uint32_t kMutating = pb::OPEN_WRITE | pb::OPEN_CREATE | pb::OPEN_TRUNCATE;
    if (brick_.options().read_only && (c.flags() & kMutating) != 0) {
      return rpc::errorReply(EROFS, "the export is read-only");
    }
    mode_t mode = static_cast<mode_t>(c.mode()) & 0777 & ~brick_.options().umask;
    auto fd = brick_.root().openFile(c.path(), toOpenFlags(c.flags()), mode);
    if (!fd) {
      ZCIO_LOG(kInfo, peer_, ": open refused: ", fd.error().toString());
      return failed(fd.error());
    }
    struct stat st {};
    ::fstat(*fd, &st);
    uint64_t fh = next_fh_++;
    files_.emplace(fh, *fd);
    rpc::OutgoingReply reply;
    reply.header.set_fh(fh);
    fillAttr(st, reply.header.mutable_attr());
    return reply;
  }

  rpc::OutgoingReply stat(const pb::Call& c) {
    if (auto refused = pathTooLong(c.path())) return *refused;
    auto st = brick_.root().statPath(c.path());
    if (!st) return failed(st.error());
    rpc::OutgoingReply reply;
    fillAttr(*st, reply.header.mutable_attr());
    return reply;
  }

  rpc::OutgoingReply fstat(const pb::Call& c) {
    auto fd = fdOf(c.fh());
    if (!fd) return failed(fd.error());
    struct stat st {};
    if (::fstat(*fd, &st) != 0) return failed(errnoError("fstat"));
    rpc::OutgoingReply reply;
    fillAttr(st, reply.header.mutable_attr());
    return reply;
  }

  static Result<void> checkRange(uint64_t offset, uint64_t length) {
    if (offset > static_cast<uint64_t>(LLONG_MAX) ||
        length > static_cast<uint64_t>(LLONG_MAX) - offset) {
      return makeError(EINVAL, "offset " + std::to_string(offset) + " + length " +
                                   std::to_string(length) + " overflows a file offset");
    }
    return okResult();
  }

  rpc::OutgoingReply read(const pb::Call& c) {
    auto fd = fdOf(c.fh());
    if (!fd) return failed(fd.error());
    if (c.length() > brick_.options().max_io) {
      return rpc::errorReply(EINVAL, "read of " + std::to_string(c.length()) +
                                         " bytes exceeds the limit of " +
                                         std::to_string(brick_.options().max_io));
    }
    if (auto ok = checkRange(c.offset(), c.length()); !ok) return failed(ok.error());
    auto buffers = brick_.options().pool->getVector(c.length());
    if (!buffers) return failed(buffers.error());
    std::vector<iovec> iov = buffers->toIovecs();
    uint64_t done = 0;
    size_t index = 0;
    while (done < c.length()) {
      // Skip the iovecs already filled; the last one may be partly filled.
      uint64_t skip = done;
      index = 0;
      while (index < iov.size() && skip >= iov[index].iov_len) skip -= iov[index++].iov_len;
      std::vector<iovec> rest(iov.begin() + static_cast<long>(index), iov.end());
      rest.front().iov_base = static_cast<char*>(rest.front().iov_base) + skip;
      rest.front().iov_len -= skip;
      ssize_t n =
          ::preadv(*fd, rest.data(), static_cast<int>(std::min<size_t>(rest.size(), IOV_MAX)),
                   static_cast<off_t>(c.offset() + done));
      if (n < 0) {
        if (errno == EINTR) continue;
        return failed(errnoError("preadv"));
      }
      if (n == 0) break;  // EOF: a short read is a result
      done += static_cast<uint64_t>(n);
    }
    buffers->truncate(done);
    rpc::OutgoingReply reply;
    reply.header.set_count(done);
    reply.payload = std::move(*buffers);
    return reply;
  }

  rpc::OutgoingReply write(const pb::Call& c, const iobuf::IoBufVector& payload) {
    if (brick_.options().read_only) return rpc::errorReply(EROFS, "the export is read-only");
    auto fd = fdOf(c.fh());
    if (!fd) return failed(fd.error());
    if (c.length() != payload.totalLength()) {
      return rpc::errorReply(EINVAL, "write header says " + std::to_string(c.length()) +
                                         " bytes but the frame carries " +
                                         std::to_string(payload.totalLength()));
    }
    if (auto ok = checkRange(c.offset(), c.length()); !ok) return failed(ok.error());
    uint64_t done = 0;
    for (const auto& slice : payload.slices()) {
      size_t off = 0;
      while (off < slice.length) {
        ssize_t n = ::pwrite(*fd, slice.data() + off, slice.length - off,
                             static_cast<off_t>(c.offset() + done));
        if (n < 0) {
          if (errno == EINTR) continue;
          return failed(errnoError("pwrite"));
        }
        off += static_cast<size_t>(n);
        done += static_cast<uint64_t>(n);
      }
    }
    rpc::OutgoingReply reply;
    reply.header.set_count(done);
    return reply;
  }

  rpc::OutgoingReply fsync(const pb::Call& c) {
    auto fd = fdOf(c.fh());
    if (!fd) return failed(fd.error());
    if (::fsync(*fd) != 0) return failed(errnoError("fsync"));
    return {};
  }

  rpc::OutgoingReply close(const pb::Call& c) {
    auto it = files_.find(c.fh());
    if (it == files_.end())
      return rpc::errorReply(EBADF, "unknown file handle " + std::to_string(c.fh()));
    int rc = ::close(it->second);
    files_.erase(it);
    if (rc != 0) return failed(errnoError("close"));
    return {};
  }

  const Brick& brick_;
  std::string peer_;
  std::unordered_map<uint64_t, int> files_;
  uint64_t next_fh_ = 1;
};

}  // namespace

Brick::Brick(ExportRoot root, BrickOptions options)
    : root_(std::move(root)), options_(std::move(options)) {
  if (!options_.pool) options_.pool = iobuf::BufferPool::create();
}

Result<std::unique_ptr<Brick>> Brick::create(const std::string& directory, BrickOptions options) {
  auto root = ExportRoot::open(directory);
  if (!root) return root.error();
  return std::make_unique<Brick>(std::move(*root), std::move(options));
}

std::unique_ptr<rpc::ServerSession> Brick::openSession(const std::string& peer) {
  return std::make_unique<BrickSession>(*this, peer);
}

}  // namespace zcio::fops
