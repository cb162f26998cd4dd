#include "test/fuzz/fuzz_support.h"

#include <algorithm>
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

}  // namespace zcio::fuzz

namespace zcio::test {

// The real server or client sent bytes that are not a frame: a finding.
void reportPeerError(const std::string& what) {
  fuzz::fuzzFail(what);
}

}  // namespace zcio::test

namespace zcio::fuzz {

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

// ---- frames ----------------------------------------------------------------

std::string framedStream(std::string_view records, rpc::FrameType type,
                         const std::function<uint64_t(size_t)>& xid_of) {
  std::string out;
  for (size_t index = 0; !records.empty(); ++index) {
    std::string_view header = takeBytes(records, takeLe16(records));
    std::string_view payload = takeBytes(records, takeLe16(records));
    out += test::encodeFrame(type, xid_of(index), header, payload);
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
