#include "rpc/shared_key.h"

#include <fcntl.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace zcio::rpc {

Result<SharedKey> SharedKey::load(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errnoError(("key file " + path).c_str());
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return makeError(EINVAL, "key file " + path + " is not a regular file");
  }
  if (st.st_uid != ::geteuid() && st.st_uid != 0) {
    ::close(fd);
    return makeError(EPERM, "key file " + path + " belongs to uid " + std::to_string(st.st_uid) +
                                ", not to this process's user or root");
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return makeError(EPERM, "key file " + path + " has mode " + mode +
                                ": group and others must have no access (chmod 600)");
  }
  std::string bytes;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
    if (bytes.size() > 64 * 1024) break;
  }
  ::close(fd);
  while (!bytes.empty() && (bytes.back() == '\n' || bytes.back() == '\r' || bytes.back() == ' ' ||
                            bytes.back() == '\t')) {
    bytes.pop_back();
  }
  if (bytes.size() < kMinKeySize) {
    return makeError(EINVAL, "key file " + path + " holds " + std::to_string(bytes.size()) +
                                 " bytes; at least " + std::to_string(kMinKeySize) + " needed");
  }
  return SharedKey(std::move(bytes));
}

std::string SharedKey::proof(std::string_view label, std::string_view client_nonce,
                             std::string_view server_nonce) const {
  std::string message;
  message.reserve(label.size() + client_nonce.size() + server_nonce.size());
  message.append(label).append(client_nonce).append(server_nonce);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), bytes_.data(), static_cast<int>(bytes_.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length);
  return std::string(reinterpret_cast<const char*>(digest), length);
}

Result<std::string> randomNonce() {
  std::string nonce(kNonceSize, '\0');
  // Without fresh randomness a handshake could be replayed: fail instead.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(kNonceSize)) !=
      1) {
    return makeError(EIO, "no randomness for a nonce (RAND_bytes failed)");
  }
  return nonce;
}

bool equalInConstantTime(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i]);
  }
  return diff == 0;
}

}  // namespace zcio::rpc
