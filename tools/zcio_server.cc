// zcio-server: exports one directory over zcio until SIGINT/SIGTERM.
//
//   zcio-server --export DIR --listen tcp://127.0.0.1:7700 [--listen rdma://10.0.0.1:7700]
//               (--key-file KEY | --auth none) [--read-only] [--umask 022] [--user NAME]
//               [--threads N] [--idle-timeout-ms MS] [--max-connections N]
//               [--max-connections-per-client N] [--allow CIDR ...]
//
// Prints "listening on URL ..." per listener once ready (PORT resolved when
// 0 was asked for), then one log line per connection and per error on stderr.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>

#include "base/admission.h"
#include "base/log.h"
#include "fops/brick.h"
#include "fops/url.h"
#include "rpc/auth_service.h"
#include "tcp/server.h"
#include "tools/privileges.h"
#include "transport/connect.h"
#if ZCIO_WITH_VERBS
#include "verbs/server.h"
#endif

namespace po = boost::program_options;
using namespace zcio;

namespace {

Result<mode_t> parseUmask(const std::string& text) {
  char* end = nullptr;
  unsigned long value = std::strtoul(text.c_str(), &end, 8);
  if (text.empty() || *end != '\0' || value > 0777) {
    return makeError(EINVAL, "--umask '" + text + "': an octal mask, 000 to 777");
  }
  return static_cast<mode_t>(value);
}

}  // namespace

int main(int argc, char** argv) {
  std::string export_dir;
  std::vector<std::string> listens;
  unsigned threads = 1;
  unsigned stall_ms = 30000;
  unsigned ack_timeout = 0;  // verbs::kDefaultAckTimeout (checked below)
  std::string key_file, auth, umask_text = "022", user;
  bool read_only = false;
  // Resource limits and the allow-list (both transports).
  ConnectionLimits limits;
  unsigned idle_ms = static_cast<unsigned>(limits.idle_timeout.count());
  std::vector<std::string> allow;
  po::options_description limit_options("limits (tcp:// and rdma://)");
  limit_options.add_options()("idle-timeout-ms", po::value(&idle_ms)->default_value(idle_ms),
                              "close a connection that waits this long for a call (0: never)")(
      "max-connections", po::value(&limits.max_connections)->default_value(limits.max_connections),
      "connections per listener; more are refused (EUSERS)")(
      "max-connections-per-client",
      po::value(&limits.max_connections_per_client)
          ->default_value(limits.max_connections_per_client),
      "connections per client address; more are refused (EUSERS)")(
      "allow", po::value(&allow)->multitoken(),
      "admit only clients in this CIDR range, IPv4 or IPv6 (repeatable; default: any); others "
      "are refused (EACCES)");
  po::options_description desc("zcio-server options");
  desc.add_options()("help,h", "show this help")("export", po::value(&export_dir)->required(),
                                                 "directory to export")(
      "listen", po::value(&listens)->multitoken(),
      "URL to listen on, tcp:// or rdma:// (repeatable; port 0 picks a free one; default "
      "tcp://127.0.0.1:7700)")("threads", po::value(&threads)->default_value(1),
                               "I/O threads (TCP)")(
      "frame-stall-ms", po::value(&stall_ms)->default_value(30000),
      "close a TCP connection whose frame, or reply write, stops moving this long")(
      "ack-timeout", po::value(&ack_timeout)->default_value(0),
      "rdma://: each QP's local ACK timeout, 4.096 us * 2^N (0: rdma_cm's default)");
  po::options_description security(
      "security (README \"Security\"; one of --key-file, --auth none)");
  security.add_options()("key-file", po::value(&key_file),
                         "the export's shared key (mode 0600): clients must prove it (HELLO)")(
      "auth", po::value(&auth), "'none': serve anyone who reaches a listener, unauthenticated")(
      "read-only", po::bool_switch(&read_only), "refuse every mutating call (EROFS)")(
      "umask", po::value(&umask_text)->default_value("022"),
      "octal mask for created files' modes (setuid/setgid/sticky are never set)")(
      "user", po::value(&user),
      "after binding, drop to this user (and its primary group): the export is then served "
      "with that user's rights, not root's");
  desc.add(security);
  desc.add(limit_options);
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
    if (ack_timeout > 31) throw po::error("--ack-timeout must be 0..31");
    if (key_file.empty() == (auth != "none")) {
      throw po::error(
          auth.empty() || auth == "none"
              ? "choose --key-file PATH (clients prove the export's shared key) or --auth none "
                "(anyone who reaches a listener reads and writes the export)"
              : "--auth takes only 'none' (a key comes with --key-file), and not with --key-file");
    }
    limits.idle_timeout = std::chrono::milliseconds(idle_ms);
    for (const auto& text : allow) {
      auto range = Cidr::parse(text);
      if (!range) throw po::error("--allow " + range.error().what);
      limits.allow.add(*range);
    }
  } catch (const po::error& e) {
    std::cerr << "zcio-server: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (listens.empty()) listens.push_back("tcp://127.0.0.1:7700");
  std::vector<fops::Url> urls;
  for (const auto& text : listens) {
    auto url = fops::parseUrl(text);
    if (!url || url->scheme == "auto") {
      std::cerr << "zcio-server: bad --listen '" << text
                << "': " << (url ? "auto is for clients" : url.error().toString()) << "\n";
      return 2;
    }
    if (url->scheme == "rdma" && !transport::rdmaBuiltIn()) {
      std::cerr << "zcio-server: --listen '" << text
                << "': " << transport::rdmaNotBuiltError().toString() << "\n";
      return 2;
    }
    urls.push_back(*url);
  }
  // Block the stop signals in every thread; main waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  fops::BrickOptions brick_options;
  brick_options.read_only = read_only;
  auto mask = parseUmask(umask_text);
  if (!mask) {
    std::cerr << "zcio-server: " << mask.error().toString() << "\n";
    return 2;
  }
  brick_options.umask = *mask;
  ::umask(*mask);  // the kernel's umask then agrees with the brick's
  std::optional<rpc::SharedKey> key;
  if (!key_file.empty()) {
    auto loaded = rpc::SharedKey::load(key_file);
    if (!loaded) {
      std::cerr << "zcio-server: " << loaded.error().toString() << "\n";
      return 1;
    }
    key = std::move(*loaded);
  }
  std::optional<tools::Credentials> drop_to;
  if (!user.empty()) {
    auto found = tools::lookUpUser(user);
    if (!found) {
      std::cerr << "zcio-server: " << found.error().toString() << "\n";
      return 2;
    }
    drop_to = *found;
  }
  auto brick = fops::Brick::create(export_dir, brick_options);
  if (!brick) {
    std::cerr << "zcio-server: " << brick.error().toString() << "\n";
    return 1;
  }
  rpc::AuthService service(**brick, std::move(key));
  if (!service.requiresKey()) {
    ZCIO_LOG(kWarn, "--auth none: every client that reaches a listener is served unauthenticated");
  }
  std::vector<std::unique_ptr<tcp::TcpServer>> tcp_servers;
#if ZCIO_WITH_VERBS
  static_assert(verbs::kDefaultAckTimeout == 0, "--ack-timeout's default");
  std::vector<std::unique_ptr<verbs::VerbsServer>> rdma_servers;
#endif
  // TCP listeners first: a port below 1024 needs root. Then root is dropped,
  // and only then are the rdma:// listeners made: the kernel refuses
  // rdma_cm and uverbs file descriptors to a process whose credentials
  // changed after it opened them ("changed security contexts").
  std::vector<std::string> ready_lines(urls.size());
  auto ready = [&](size_t i, uint16_t port) {
    // Printed once privileges are dropped: a client that waits for the line
    // is never served as root by mistake.
    fops::Url bound = urls[i];
    bound.port = port;  // endpoint() brackets an IPv6 host, so the line is a usable URL
    ready_lines[i] = "listening on " + bound.endpoint() + " exporting " + export_dir;
  };
  for (size_t i = 0; i < urls.size(); ++i) {
    if (urls[i].scheme != "tcp") continue;
    tcp::ServerOptions options;
    options.host = urls[i].host;
    options.port = urls[i].port;
    options.threads = threads;
    options.frame_stall_timeout = std::chrono::milliseconds(stall_ms);
    options.limits = limits;
    auto server = tcp::TcpServer::start(options, service);
    if (!server) {
      std::cerr << "zcio-server: " << server.error().toString() << "\n";
      return 1;
    }
    ready(i, (*server)->port());
    tcp_servers.push_back(std::move(*server));
  }
  if (drop_to) {
    auto dropped = tools::dropPrivileges(*drop_to);
    if (!dropped) {
      std::cerr << "zcio-server: " << dropped.error().toString() << "\n";
      return 1;
    }
    ZCIO_LOG(kInfo, "serving as ", user, " (uid ", drop_to->uid, ", gid ", drop_to->gid, ")");
  } else if (::geteuid() == 0) {
    ZCIO_LOG(kWarn, "running as root without --user: clients act with root's rights in the export");
  }
#if ZCIO_WITH_VERBS  // without it, rdma:// was refused above
  for (size_t i = 0; i < urls.size(); ++i) {
    if (urls[i].scheme == "tcp") continue;
    verbs::VerbsServerOptions options;
    options.host = urls[i].host;
    options.port = urls[i].port;
    options.pool = (*brick)->options().pool;
    options.ack_timeout = static_cast<uint8_t>(ack_timeout);
    options.limits = limits;
    auto server = verbs::VerbsServer::start(options, service);
    if (!server) {
      std::cerr << "zcio-server: rdma://" << urls[i].host << ":" << urls[i].port << ": "
                << server.error().toString() << "\n";
      return 1;
    }
    ready(i, (*server)->port());
    rdma_servers.push_back(std::move(*server));
  }
#endif
  for (const auto& line : ready_lines) std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  ZCIO_LOG(kInfo, "signal ", sig, ": stopping");
  for (auto& s : tcp_servers) s->stop();
#if ZCIO_WITH_VERBS
  for (auto& s : rdma_servers) s->stop();
#endif
  return 0;
}
