// A temporary directory removed (recursively) at scope end.
#pragma once

#include <string>

namespace zcio::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Writes `size` bytes of deterministic pseudo-random data (seeded) to `path`
// and returns them.
std::string writeRandomFile(const std::string& path, size_t size, uint64_t seed);
std::string readLocalFile(const std::string& path);

}  // namespace zcio::test
