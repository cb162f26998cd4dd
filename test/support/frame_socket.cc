#include "test/support/frame_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace zcio::test {
namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

void setNoDelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

}  // namespace

// ---- FrameSocket ----------------------------------------------------------

FrameSocket::FrameSocket(FrameSocket&& other) noexcept : fd_(other.fd_) {
  other.fd_ = -1;
}

FrameSocket& FrameSocket::operator=(FrameSocket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

FrameSocket FrameSocket::connectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return FrameSocket();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return FrameSocket();
  }
  setNoDelay(fd);
  return FrameSocket(fd);
}

void FrameSocket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void FrameSocket::shutdownWrite() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool FrameSocket::sendRaw(std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

bool FrameSocket::sendPreamble(const rpc::Preamble& preamble) {
  auto bytes = rpc::encodePreamble(preamble);
  return sendRaw(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

bool FrameSocket::sendFrame(rpc::FrameType type, uint64_t xid, std::string_view header,
                            std::string_view payload) {
  return sendRaw(encodeFrame(type, xid, header, payload));
}

bool FrameSocket::sendReply(uint64_t xid, const rpc::pb::Reply& reply, std::string_view payload) {
  return sendFrame(rpc::FrameType::kReply, xid, reply.SerializeAsString(), payload);
}

bool FrameSocket::sendCall(uint64_t xid, const rpc::pb::Call& call, std::string_view payload) {
  return sendFrame(rpc::FrameType::kCall, xid, call.SerializeAsString(), payload);
}

bool FrameSocket::readExact(void* buffer, size_t length, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  char* out = static_cast<char*>(buffer);
  size_t done = 0;
  while (done < length) {
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, remainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return false;  // deadline or error
    ssize_t n = ::recv(fd_, out + done, length - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // EOF or reset
    done += static_cast<size_t>(n);
  }
  return true;
}

std::optional<RawFrame> FrameSocket::readFrame(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  rpc::PreambleBytes bytes{};
  if (!readExact(bytes.data(), bytes.size(), timeout)) return std::nullopt;
  auto decoded = rpc::decodePreamble(bytes);
  if (!decoded) {
    reportPeerError("FrameSocket: bad preamble from the other end: " + decoded.error().what);
    return std::nullopt;
  }
  RawFrame frame;
  frame.preamble = *decoded;
  frame.header.resize(frame.preamble.header_length);
  frame.payload.resize(frame.preamble.payload_length);
  auto left = std::chrono::milliseconds(remainingMs(deadline));
  if (!readExact(frame.header.data(), frame.header.size(), left)) return std::nullopt;
  left = std::chrono::milliseconds(remainingMs(deadline));
  if (!readExact(frame.payload.data(), frame.payload.size(), left)) return std::nullopt;
  return frame;
}

namespace {

// One frame of `type` whose header parses into `Received::*header`; nullopt (reported)
// otherwise.
template <typename Received, typename Message>
std::optional<Received> readTyped(FrameSocket& socket, std::chrono::milliseconds timeout,
                                  rpc::FrameType type, const char* kind,
                                  Message Received::*header) {
  auto frame = socket.readFrame(timeout);
  if (!frame) return std::nullopt;
  if (frame->preamble.type != type) {
    reportPeerError(std::string("FrameSocket: expected a ") + kind + " frame");
    return std::nullopt;
  }
  Received received;
  if (!(received.*header).ParseFromString(frame->header)) {
    reportPeerError(std::string("FrameSocket: ") + kind + " header does not parse");
    return std::nullopt;
  }
  received.xid = frame->preamble.xid;
  received.payload = std::move(frame->payload);
  return received;
}

}  // namespace

std::optional<ReceivedCall> FrameSocket::readCall(std::chrono::milliseconds timeout) {
  return readTyped(*this, timeout, rpc::FrameType::kCall, "call", &ReceivedCall::call);
}

std::optional<ReceivedReply> FrameSocket::readReply(std::chrono::milliseconds timeout) {
  return readTyped(*this, timeout, rpc::FrameType::kReply, "reply", &ReceivedReply::reply);
}

bool FrameSocket::waitClosed(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  char sink[4096];
  while (true) {
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, remainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) return false;
    if (rc == 0) return false;  // still open at the deadline
    ssize_t n = ::recv(fd_, sink, sizeof sink, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;  // EOF or reset
  }
}

std::string encodeFrame(rpc::FrameType type, uint64_t xid, std::string_view header,
                        std::string_view payload) {
  rpc::Preamble p;
  p.type = type;
  p.header_length = static_cast<uint32_t>(header.size());
  p.xid = xid;
  p.payload_length = payload.size();
  auto bytes = rpc::encodePreamble(p);
  std::string frame(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  frame.append(header);
  frame.append(payload);
  return frame;
}

// ---- LoopbackListener -----------------------------------------------------

LoopbackListener::LoopbackListener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return;
  }
  int one = 1;
  ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    error_ = std::string("bind/listen on 127.0.0.1: ") + std::strerror(errno);
    close();
    return;
  }
  port_ = ntohs(addr.sin_port);
}

void LoopbackListener::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

FrameSocket LoopbackListener::accept(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    pollfd pfd{fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, remainingMs(deadline));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return FrameSocket();  // deadline or error
    int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return FrameSocket();
    setNoDelay(fd);
    return FrameSocket(fd);
  }
}

}  // namespace zcio::test
