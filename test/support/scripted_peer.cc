#include "test/support/scripted_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>
#include <stdexcept>

#include <gtest/gtest.h>

namespace zcio::test {
namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

void putLe(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
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
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
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
  rpc::Preamble p;
  p.type = type;
  p.header_length = static_cast<uint32_t>(header.size());
  p.xid = xid;
  p.payload_length = payload.size();
  auto bytes = rpc::encodePreamble(p);
  std::string frame(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  frame.append(header);
  frame.append(payload);
  return sendRaw(frame);
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
    ADD_FAILURE() << "FrameSocket: bad preamble from the other end: " << decoded.error().what;
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

std::optional<ReceivedCall> FrameSocket::readCall(std::chrono::milliseconds timeout) {
  auto frame = readFrame(timeout);
  if (!frame) return std::nullopt;
  if (frame->preamble.type != rpc::FrameType::kCall) {
    ADD_FAILURE() << "FrameSocket: expected a call frame";
    return std::nullopt;
  }
  ReceivedCall call;
  call.xid = frame->preamble.xid;
  if (!call.call.ParseFromString(frame->header)) {
    ADD_FAILURE() << "FrameSocket: call header does not parse";
    return std::nullopt;
  }
  call.payload = std::move(frame->payload);
  return call;
}

std::optional<ReceivedReply> FrameSocket::readReply(std::chrono::milliseconds timeout) {
  auto frame = readFrame(timeout);
  if (!frame) return std::nullopt;
  if (frame->preamble.type != rpc::FrameType::kReply) {
    ADD_FAILURE() << "FrameSocket: expected a reply frame";
    return std::nullopt;
  }
  ReceivedReply reply;
  reply.xid = frame->preamble.xid;
  if (!reply.reply.ParseFromString(frame->header)) {
    ADD_FAILURE() << "FrameSocket: reply header does not parse";
    return std::nullopt;
  }
  reply.payload = std::move(frame->payload);
  return reply;
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

// ---- Signal ---------------------------------------------------------------

void Signal::notify() {
  std::lock_guard lock(mutex_);
  set_ = true;
  cv_.notify_all();
}

bool Signal::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return set_; });
}

bool Signal::isSet() {
  std::lock_guard lock(mutex_);
  return set_;
}

// ---- ScriptedPeer ---------------------------------------------------------

ScriptedPeer::ScriptedPeer(Script script) : script_(std::move(script)) {
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("ScriptedPeer: socket failed");
  int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 16) != 0) {
    ::close(listen_fd_);
    throw std::runtime_error("ScriptedPeer: bind/listen failed");
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  thread_ = std::thread([this] { run(); });
}

ScriptedPeer::~ScriptedPeer() {
  stop();
}

void ScriptedPeer::run() {
  for (int index = 0; !stopping_.load(); ++index) {
    // Poll so stop() is noticed without closing the fd under accept().
    pollfd pfd{listen_fd_, POLLIN, 0};
    int rc = ::poll(&pfd, 1, 20);
    if (rc <= 0) {
      --index;
      continue;
    }
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      --index;
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    {
      std::lock_guard lock(mutex_);
      current_fd_ = fd;
    }
    FrameSocket connection(fd);
    if (!stopping_.load()) script_(connection, index);
    {
      std::lock_guard lock(mutex_);
      current_fd_ = -1;
    }
    connection.close();
    scripts_done_.fetch_add(1);
  }
}

bool ScriptedPeer::waitScriptsDone(int count, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (scripts_done_.load() < count) {
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

void ScriptedPeer::stop() {
  if (stopping_.exchange(true)) return;
  {
    std::lock_guard lock(mutex_);
    // Wakes a script blocked in a read; the fd itself is closed by run().
    if (current_fd_ >= 0) ::shutdown(current_fd_, SHUT_RDWR);
  }
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
  listen_fd_ = -1;
}

// ---- helpers --------------------------------------------------------------

std::string patternBytes(size_t length, uint64_t seed) {
  std::string data(length, '\0');
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + 1);
  for (size_t i = 0; i < length; i += 8) {
    uint64_t v = rng();
    for (size_t b = 0; b < 8 && i + b < length; ++b) data[i + b] = static_cast<char>(v >> (8 * b));
  }
  return data;
}

rpc::pb::Reply readReplyHeader(uint64_t count) {
  rpc::pb::Reply reply;
  reply.set_count(count);
  return reply;
}

std::string rawPreamble(uint32_t magic, uint8_t version, uint8_t type, uint16_t flags,
                        uint32_t header_length, uint32_t reserved, uint64_t xid,
                        uint64_t payload_length) {
  std::string out;
  putLe(out, magic, 4);
  putLe(out, version, 1);
  putLe(out, type, 1);
  putLe(out, flags, 2);
  putLe(out, header_length, 4);
  putLe(out, reserved, 4);
  putLe(out, xid, 8);
  putLe(out, payload_length, 8);
  return out;
}

}  // namespace zcio::test
