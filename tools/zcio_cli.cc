// zcio: the client CLI.
//
//   zcio read  [--direct|--regular] [--block SIZE] [--qd N] [--sha256] [--json] URL/PATH
//   zcio write [--direct|--regular] [--block SIZE] [--qd N] LOCAL URL/PATH
//   zcio demo  [--size SIZE] [--block SIZE] [--qd N]
//
// read/write print bytes, MB/s, client CPU per KiB and the bytes zcio copied
// in user space; demo runs a server in-process over a temporary directory and
// shows direct and regular side by side.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <random>

#include "base/log.h"
#include "fops/brick.h"
#include "fops/url.h"
#include "rpc/auth_service.h"
#include "tcp/server.h"
#include "tools/transfer.h"

namespace po = boost::program_options;
using namespace zcio;

namespace {

struct Common {
  bool direct = false;
  bool regular = false;
  std::string block = "1M";
  unsigned qd = 8;
  bool json = false;
  bool sha256 = false;
  bool whole = false;
  bool no_windows = false;
  double timeout_s = 60;
  unsigned ack_timeout = transport::RdmaOptions{}.ack_timeout;
  std::string key_file;
};

void addCommon(po::options_description& desc, Common& c) {
  desc.add_options()("direct", po::bool_switch(&c.direct), "zero-copy path (default)")(
      "regular", po::bool_switch(&c.regular), "copying path (GlusterFS's behaviour)")(
      "block", po::value(&c.block)->default_value("1M"), "block size per call (K/M/G)")(
      "qd", po::value(&c.qd)->default_value(8), "calls in flight")(
      "sha256", po::bool_switch(&c.sha256), "print the SHA-256 of the data")(
      "json", po::bool_switch(&c.json), "print one JSON line instead of text")(
      "timeout", po::value(&c.timeout_s)->default_value(60),
      "seconds each call may take before it fails (ETIMEDOUT)")(
      "ack-timeout",
      po::value(&c.ack_timeout)->default_value(unsigned{transport::RdmaOptions{}.ack_timeout}),
      "rdma://: the QP's local ACK timeout, 4.096 us * 2^N (0: rdma_cm's default)")(
      "key-file", po::value(&c.key_file),
      "the export's shared key (mode 0600); default $ZCIO_KEY_FILE; none: only --auth none "
      "servers")("no-memory-windows", po::bool_switch(&c.no_windows),
                 "rdma://: register each call's memory instead of binding windows (comparisons)");
}

Result<tools::TransferOptions> toOptions(const Common& c) {
  if (c.direct && c.regular) return makeError(EINVAL, "--direct and --regular are exclusive");
  auto block = tools::parseSize(c.block);
  if (!block) return block.error();
  if (*block == 0 || *block > fops::Client::maxIoSize()) {
    return makeError(EINVAL, "--block must be 1 byte .. 64 MiB");
  }
  if (c.qd == 0 || c.qd > 1024) return makeError(EINVAL, "--qd must be 1..1024");
  tools::TransferOptions o;
  o.mode = c.regular ? fops::IoMode::kRegular : fops::IoMode::kDirect;
  o.block = *block;
  o.queue_depth = c.qd;
  o.sha256 = c.sha256;
  o.whole_buffer = c.whole;
  return o;
}

void printReport(const char* op, const tools::TransferOptions& o, const tools::TransferReport& r,
                 bool json) {
  double copied_ratio = r.bytes ? static_cast<double>(r.bytes_copied) / r.bytes : 0;
  if (json) {
    std::printf(
        "{\"tool\":\"zcio\",\"op\":\"%s\",\"mode\":\"%s\",\"block\":%llu,\"qd\":%u,\"bytes\":%llu,"
        "\"seconds\":%.6f,\"mb_per_s\":%.1f,\"cpu_ns_per_kib\":%.1f,\"bytes_copied\":%llu,"
        "\"requests\":%llu%s%s%s}\n",
        op, tools::modeName(o.mode).c_str(), static_cast<unsigned long long>(o.block),
        o.queue_depth, static_cast<unsigned long long>(r.bytes), r.seconds, r.mbPerSecond(),
        r.cpuNsPerKiB(), static_cast<unsigned long long>(r.bytes_copied),
        static_cast<unsigned long long>(r.requests), r.sha256.empty() ? "" : ",\"sha256\":\"",
        r.sha256.c_str(), r.sha256.empty() ? "" : "\"");
  } else {
    std::printf(
        "%s %s: %llu bytes in %.3f s = %.1f MB/s, client CPU %.1f ns/KiB, "
        "copied by zcio %llu bytes (%.4f%%), %llu calls\n",
        op, tools::modeName(o.mode).c_str(), static_cast<unsigned long long>(r.bytes), r.seconds,
        r.mbPerSecond(), r.cpuNsPerKiB(), static_cast<unsigned long long>(r.bytes_copied),
        copied_ratio * 100, static_cast<unsigned long long>(r.requests));
    if (!r.sha256.empty()) std::printf("sha256 %s\n", r.sha256.c_str());
  }
}

int fail(const std::string& what) {
  std::fprintf(stderr, "zcio: %s\n", what.c_str());
  return 1;
}

// Parses argv[2..] against `desc` with positional arguments `names`.
bool parse(int argc, char** argv, po::options_description& desc,
           const std::vector<std::string>& names, po::variables_map& vm) {
  po::positional_options_description pos;
  for (const auto& n : names) pos.add(n.c_str(), 1);
  try {
    po::store(po::command_line_parser(argc - 1, argv + 1).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "zcio: %s\n", e.what());
    std::cerr << desc << "\n";
    return false;
  }
  return true;
}

Result<std::pair<std::unique_ptr<fops::Client>, std::string>> connectTo(const std::string& text,
                                                                        const Common& c) {
  auto url = fops::parseUrl(text);
  if (!url) return url.error();
  if (url->path.empty()) return makeError(EINVAL, "URL '" + text + "' names no file");
  if (!(c.timeout_s > 0 && c.timeout_s <= 86400))
    return makeError(EINVAL, "--timeout must be above 0 and at most 86400 seconds");
  fops::ClientOptions options;
  options.rdma.memory_windows = !c.no_windows;
  options.timeout = std::chrono::milliseconds(static_cast<int64_t>(c.timeout_s * 1000));
  if (c.ack_timeout > 31) return makeError(EINVAL, "--ack-timeout must be 0..31");
  options.rdma.ack_timeout = static_cast<uint8_t>(c.ack_timeout);
  options.key_file = c.key_file;
  auto client = fops::Client::connect(url->endpoint(), options);
  if (!client) return client.error();
  return std::make_pair(std::move(*client), url->path);
}

int cmdRead(int argc, char** argv) {
  Common c;
  std::string target;
  po::options_description desc("zcio read [options] URL/PATH");
  addCommon(desc, c);
  desc.add_options()("whole", po::bool_switch(&c.whole), "read into one file-sized buffer")(
      "url", po::value(&target)->required(), "tcp://host:port/path");
  po::variables_map vm;
  if (!parse(argc, argv, desc, {"url"}, vm)) return 2;
  auto o = toOptions(c);
  if (!o) return fail(o.error().toString());
  auto conn = connectTo(target, c);
  if (!conn) return fail(conn.error().toString());
  auto& [client, path] = *conn;
  auto fh = client->open(path, O_RDONLY);
  if (!fh) return fail(fh.error().toString());
  auto st = client->fstat(*fh);
  if (!st) return fail(st.error().toString());
  auto report = tools::readFile(*client, *fh, st->size, *o);
  // After a failed transfer the connection may be stalled: a CLOSE would
  // wait a second timeout. Disconnecting frees the server's handle anyway.
  if (!report) return fail(report.error().toString());
  (void)client->close(*fh);
  printReport("read", *o, *report, c.json);
  return 0;
}

int cmdWrite(int argc, char** argv) {
  Common c;
  std::string local;
  std::string target;
  po::options_description desc("zcio write [options] LOCAL URL/PATH");
  addCommon(desc, c);
  desc.add_options()("local", po::value(&local)->required(), "local file to send")(
      "url", po::value(&target)->required(), "tcp://host:port/path");
  po::variables_map vm;
  if (!parse(argc, argv, desc, {"local", "url"}, vm)) return 2;
  auto o = toOptions(c);
  if (!o) return fail(o.error().toString());
  int fd = ::open(local.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(errnoError(("open " + local).c_str()).toString());
  struct stat st {};
  ::fstat(fd, &st);
  auto conn = connectTo(target, c);
  if (!conn) return fail(conn.error().toString());
  auto& [client, path] = *conn;
  auto fh = client->open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!fh) return fail(fh.error().toString());
  auto report = tools::writeFile(
      *client, *fh, static_cast<uint64_t>(st.st_size), *o,
      [fd](uint64_t offset, std::byte* dst, size_t length) -> Result<void> {
        size_t done = 0;
        while (done < length) {
          ssize_t n = ::pread(fd, dst + done, length - done, static_cast<off_t>(offset + done));
          if (n <= 0) return makeError(n == 0 ? EIO : errno, "read local file");
          done += static_cast<size_t>(n);
        }
        return okResult();
      });
  ::close(fd);
  if (report) {
    auto synced = client->fsync(*fh);
    if (!synced) return fail(synced.error().toString());
  }
  if (!report) return fail(report.error().toString());  // no CLOSE: see cmdRead
  auto closed = client->close(*fh);
  if (!closed) return fail(closed.error().toString());
  printReport("write", *o, *report, c.json);
  return 0;
}

// 32 random bytes, base64 (as `head -c 32 /dev/urandom | base64` would make).
Result<rpc::SharedKey> writeDemoKey(const std::string& path) {
  auto raw = rpc::randomNonce();  // 32 bytes from OpenSSL's CSPRNG
  if (!raw) return raw.error();
  std::string text(64, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()),
                          reinterpret_cast<const unsigned char*>(raw->data()),
                          static_cast<int>(raw->size()));
  text.resize(static_cast<size_t>(n));
  text += "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return errnoError(("create " + path).c_str());
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ::close(fd);
  if (!ok) return makeError(EIO, "write " + path);
  return rpc::SharedKey::load(path);
}

int cmdDemo(int argc, char** argv) {
  std::string size_text = "256M";
  std::string block_text = "1M";
  unsigned qd = 8;
  po::options_description desc("zcio demo [options]");
  desc.add_options()("size", po::value(&size_text)->default_value("256M"), "file size")(
      "block", po::value(&block_text)->default_value("1M"), "block size")(
      "qd", po::value(&qd)->default_value(8), "calls in flight");
  po::variables_map vm;
  if (!parse(argc, argv, desc, {}, vm)) return 2;
  auto size = tools::parseSize(size_text);
  auto block = tools::parseSize(block_text);
  if (!size || !block || *block == 0 || *block > fops::Client::maxIoSize() || qd == 0) {
    return fail("bad --size/--block/--qd");
  }

  // The in-process server's per-connection lines would interleave with the table.
  if (std::getenv("ZCIO_LOG") == nullptr) log::setLevel(log::Level::kWarn);
  char dir_template[] = "/tmp/zcio-demo-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) return fail("mkdtemp failed");
  std::string dir = dir_template;
  auto brick = fops::Brick::create(dir);
  if (!brick) return fail(brick.error().toString());
  // The demo authenticates as every deployment should: a fresh shared key,
  // readable by its owner only, outside the export.
  std::string key_path = std::string(dir) + ".key";
  auto key = writeDemoKey(key_path);
  if (!key) return fail(key.error().toString());
  rpc::AuthService auth(**brick, std::move(*key));
  auto server = tcp::TcpServer::start(tcp::ServerOptions{}, auth);
  if (!server) return fail(server.error().toString());
  std::string url = "tcp://127.0.0.1:" + std::to_string((*server)->port());
  std::printf("zcio demo: server exporting %s on %s (in this process)\n", dir.c_str(), url.c_str());

  fops::ClientOptions client_options;
  client_options.key_file = key_path;
  auto client = fops::Client::connect(url, client_options);
  if (!client) return fail(client.error().toString());
  std::printf("client connected: %s, authenticated with the key in %s (hmac-sha256)\n",
              (*client)->describe().c_str(), key_path.c_str());

  auto fill = [](uint64_t offset, std::byte* dst, size_t length) -> Result<void> {
    tools::fillPattern(offset, dst, length);
    return okResult();
  };

  struct Row {
    std::string op, mode;
    tools::TransferReport report;
  };
  std::vector<Row> rows;
  std::string source_sha;
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    tools::TransferOptions o;
    o.mode = mode;
    o.block = *block;
    o.queue_depth = qd;
    o.sha256 = true;
    std::string name = "demo-" + tools::modeName(mode) + ".bin";
    auto fh = (*client)->open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (!fh) return fail(fh.error().toString());
    auto written = tools::writeFile(**client, *fh, *size, o, fill);
    if (!written) return fail("write: " + written.error().toString());
    if (auto s = (*client)->fsync(*fh); !s) return fail(s.error().toString());
    source_sha = written->sha256;
    rows.push_back({"write", tools::modeName(mode), *written});
    for (auto read_mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
      o.mode = read_mode;
      auto read = tools::readFile(**client, *fh, *size, o);
      if (!read) return fail("read: " + read.error().toString());
      if (read->sha256 != source_sha) return fail("verification FAILED: data read back differs");
      rows.push_back({"read", tools::modeName(read_mode), *read});
    }
    (void)(*client)->close(*fh);
    std::filesystem::remove(dir + "/" + name);
  }
  std::printf("\n%-6s %-8s %12s %10s %16s %12s %s\n", "op", "mode", "bytes", "MB/s", "bytes copied",
              "copied/byte", "verified");
  for (const Row& r : rows) {
    std::printf("%-6s %-8s %12llu %10.1f %16llu %12.4f %s\n", r.op.c_str(), r.mode.c_str(),
                static_cast<unsigned long long>(r.report.bytes), r.report.mbPerSecond(),
                static_cast<unsigned long long>(r.report.bytes_copied),
                r.report.bytes ? static_cast<double>(r.report.bytes_copied) / r.report.bytes : 0.0,
                r.op == "read" ? "sha256 ok" : "-");
  }
  std::printf("\nsha256 of the data: %s\n", source_sha.c_str());
  std::printf(
      "block %s, %u calls in flight; server and client share this process, so MB/s is\n"
      "indicative only — see bench/run-tcp for the side-by-side measurement.\n",
      block_text.c_str(), qd);
  client->reset();
  (*server)->stop();
  std::filesystem::remove_all(dir);
  std::filesystem::remove(key_path);
  return 0;
}

void usage() {
  std::fprintf(stderr,
               "usage: zcio read  [--direct|--regular] [--block SIZE] [--qd N] [--sha256] [--json] "
               "URL/PATH\n"
               "       zcio write [--direct|--regular] [--block SIZE] [--qd N] LOCAL URL/PATH\n"
               "       zcio demo  [--size SIZE] [--block SIZE] [--qd N]\n"
               "URL: tcp://host:port\n");
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "read") return cmdRead(argc, argv);
  if (cmd == "write") return cmdWrite(argc, argv);
  if (cmd == "demo") return cmdDemo(argc, argv);
  usage();
  return 2;
}
