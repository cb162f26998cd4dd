#include "test/fuzz/fuzz_support.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <google/protobuf/stubs/logging.h>

#include "base/log.h"

namespace zcio::fuzz {
namespace {

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

// Waits until `fd` has `events`; false on deadline or poll error.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, remainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

void putLe(std::string& out, uint64_t value, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

size_t takeLe16(std::string_view& in) {
  size_t v = 0;
  for (size_t i = 0; i < 2 && !in.empty(); ++i) {
    v |= static_cast<size_t>(static_cast<uint8_t>(in.front())) << (8 * i);
    in.remove_prefix(1);
  }
  return v;
}

std::string_view takeBytes(std::string_view& in, size_t n) {
  n = std::min(n, in.size());
  std::string_view out = in.substr(0, n);
  in.remove_prefix(n);
  return out;
}

}  // namespace

void fuzzFail(const std::string& why) {
  std::fprintf(stderr, "zcio fuzz: FINDING: %s\n", why.c_str());
  std::fflush(stderr);
  std::abort();
}

void quietLogs() {
  if (std::getenv("ZCIO_LOG") != nullptr) return;
  log::setLevel(log::Level::kError);
  // protobuf logs each non-UTF-8 string field it meets; fuzzing meets many.
  google::protobuf::SetLogHandler(nullptr);
}

// ---- FuzzExport ------------------------------------------------------------

FuzzExport::FuzzExport() {
  // tmpfs when there is one: fuzzed FSYNCs then cost nothing.
  std::filesystem::path base = std::filesystem::temp_directory_path();
  if (std::getenv("TMPDIR") == nullptr && std::filesystem::is_directory("/dev/shm")) {
    base = "/dev/shm";
  }
  std::string tmpl = (base / "zcio-fuzz-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) fuzzFail("mkdtemp: " + std::string(std::strerror(errno)));
  parent_ = tmpl;
  export_ = parent_ + "/export";
  std::error_code ec;
  std::filesystem::create_directory(export_, ec);
  std::filesystem::create_directory(export_ + "/dir", ec);
  if (ec) fuzzFail("cannot make " + export_ + ": " + ec.message());
  auto write = [&](const std::string& name, std::string_view data) {
    std::ofstream out(export_ + "/" + name, std::ios::binary | std::ios::trunc);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) fuzzFail("cannot write " + name);
  };
  write(std::string(kProbeFile), kProbeContents);
  write("a", "hello");
  write("dir/b", std::string(8192, 'b'));
  write("empty", "");
}

FuzzExport::~FuzzExport() {
  std::error_code ignored;
  std::filesystem::remove_all(parent_, ignored);
}

void FuzzExport::checkConfined() const {
  for (const auto& entry : std::filesystem::directory_iterator(parent_)) {
    if (entry.path() != export_) {
      fuzzFail("a call created " + entry.path().string() + " outside the export " + export_);
    }
  }
}

// ---- FuzzServer ------------------------------------------------------------

FuzzServer startFuzzServer(const std::string& directory, bool keyed) {
  constexpr uint64_t kMaxIo = 256 * 1024;
  fops::BrickOptions brick_options;
  brick_options.max_io = kMaxIo;
  brick_options.max_open_files = 64;
  auto brick = fops::Brick::create(directory, brick_options);
  if (!brick) fuzzFail("Brick::create: " + brick.error().toString());

  tcp::ServerOptions options;
  options.threads = 1;
  options.max_payload = kMaxIo;
  options.frame_stall_timeout = 2000ms;
  std::optional<rpc::SharedKey> key;
  if (keyed) key = rpc::SharedKey::fromBytes(std::string(kFuzzKey));
  auto auth = std::make_unique<rpc::AuthService>(**brick, std::move(key));
  auto server = tcp::TcpServer::start(options, *auth);
  if (!server) fuzzFail("TcpServer::start: " + server.error().toString());
  return FuzzServer{std::move(*brick), std::move(auth), std::move(*server)};
}

// ---- Socket ----------------------------------------------------------------

Socket& Socket::operator=(Socket&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Socket Socket::connectTo(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Socket();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return Socket();
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return Socket(fd);
}

void Socket::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void Socket::shutdownWrite() {
  if (fd_ >= 0) ::shutdown(fd_, SHUT_WR);
}

bool Socket::sendAll(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool Socket::readExact(void* buffer, size_t length, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  auto* out = static_cast<char*>(buffer);
  while (length > 0) {
    if (!waitFor(fd_, POLLIN, deadline)) return false;
    ssize_t n = ::recv(fd_, out, length, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    out += n;
    length -= static_cast<size_t>(n);
  }
  return true;
}

bool Socket::drainUntilClosed(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  char scratch[16384];
  for (;;) {
    if (!waitFor(fd_, POLLIN, deadline)) return false;
    ssize_t n = ::recv(fd_, scratch, sizeof scratch, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
  }
}

// ---- Listener --------------------------------------------------------------

Listener::Listener() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) fuzzFail("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    fuzzFail("listener: " + std::string(std::strerror(errno)));
  }
  port_ = ntohs(addr.sin_port);
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

Socket Listener::accept(std::chrono::milliseconds timeout) {
  if (!waitFor(fd_, POLLIN, Clock::now() + timeout)) return Socket();
  int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) return Socket();
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return Socket(fd);
}

// ---- frames ----------------------------------------------------------------

std::optional<Frame> readFrame(Socket& socket, std::chrono::milliseconds timeout,
                               uint64_t max_payload) {
  rpc::PreambleBytes bytes{};
  if (!socket.readExact(bytes.data(), bytes.size(), timeout)) return std::nullopt;
  auto preamble = rpc::decodePreamble(bytes, max_payload);
  if (!preamble) return std::nullopt;
  Frame frame;
  frame.preamble = *preamble;
  frame.header.resize(preamble->header_length);
  frame.payload.resize(preamble->payload_length);
  if (!socket.readExact(frame.header.data(), frame.header.size(), timeout) ||
      !socket.readExact(frame.payload.data(), frame.payload.size(), timeout)) {
    return std::nullopt;
  }
  return frame;
}

std::string encodeFrame(rpc::FrameType type, uint64_t xid, std::string_view header,
                        std::string_view payload) {
  rpc::Preamble p;
  p.type = type;
  p.header_length = static_cast<uint32_t>(header.size());
  p.xid = xid;
  p.payload_length = payload.size();
  auto bytes = rpc::encodePreamble(p);
  std::string out(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  out.append(header);
  out.append(payload);
  return out;
}

std::string framedStream(std::string_view records, rpc::FrameType type,
                         const std::function<uint64_t(size_t)>& xid_of) {
  std::string out;
  for (size_t index = 0; !records.empty(); ++index) {
    std::string_view header = takeBytes(records, takeLe16(records));
    std::string_view payload = takeBytes(records, takeLe16(records));
    out += encodeFrame(type, xid_of(index), header, payload);
  }
  return out;
}

std::string framedRecord(std::string_view header, std::string_view payload) {
  std::string out;
  putLe(out, header.size(), 2);
  out.append(header);
  putLe(out, payload.size(), 2);
  out.append(payload);
  return out;
}

}  // namespace zcio::fuzz
