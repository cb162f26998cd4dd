// Brick: the server side of zcio's file operations. Exports exactly one
// directory (see ExportRoot) to every connection; each connection gets a
// session with its own file-handle table, closed when the peer goes away.
// Nothing a client sends is trusted: handles, lengths, offsets and paths are
// checked and answered with an error reply when wrong.
#pragma once

#include <memory>
#include <string>

#include "fops/export_root.h"
#include "iobuf/buffer_pool.h"
#include "rpc/frame.h"
#include "rpc/service.h"

namespace zcio::fops {

struct BrickOptions {
  uint64_t max_io = rpc::kMaxPayloadLength;  // largest READ a call may ask for
  size_t max_open_files = 1024;              // per connection
  // Export policy (README "Security"). A read-only export answers every
  // mutating call (OPEN for writing, creating or truncating; WRITE) EROFS.
  bool read_only = false;
  // Masked out of the mode of files clients create; setuid, setgid and
  // sticky bits are never granted, whatever the umask.
  mode_t umask = 022;
  std::shared_ptr<iobuf::BufferPool> pool;  // made if null
};

class Brick final : public rpc::Service {
 public:
  static Result<std::unique_ptr<Brick>> create(const std::string& directory,
                                               BrickOptions options = {});
  std::unique_ptr<rpc::ServerSession> openSession(const std::string& peer) override;

  const ExportRoot& root() const { return root_; }
  const BrickOptions& options() const { return options_; }

  Brick(ExportRoot root, BrickOptions options);

 private:
  ExportRoot root_;
  BrickOptions options_;
};

}  // namespace zcio::fops
