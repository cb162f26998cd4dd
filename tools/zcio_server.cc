// zcio-server: exports one directory over zcio until SIGINT/SIGTERM.
//
//   zcio-server --export DIR --listen tcp://127.0.0.1:7700 [--listen rdma://10.0.0.1:7700]
//               [--threads N]
//
// Prints "listening on URL ..." per listener once ready (PORT resolved when
// 0 was asked for), then one log line per connection and per error on stderr.
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "base/log.h"
#include "fops/brick.h"
#include "fops/url.h"
#include "tcp/server.h"
#include "verbs/server.h"

namespace po = boost::program_options;
using namespace zcio;

int main(int argc, char** argv) {
  std::string export_dir;
  std::vector<std::string> listens;
  unsigned threads = 1;
  unsigned stall_ms = 30000;
  unsigned ack_timeout = verbs::kDefaultAckTimeout;
  po::options_description desc("zcio-server options");
  desc.add_options()("help,h", "show this help")("export", po::value(&export_dir)->required(),
                                                 "directory to export")(
      "listen", po::value(&listens)->multitoken(),
      "URL to listen on, tcp:// or rdma:// (repeatable; port 0 picks a free one; default "
      "tcp://127.0.0.1:7700)")("threads", po::value(&threads)->default_value(1),
                               "I/O threads (TCP)")(
      "frame-stall-ms", po::value(&stall_ms)->default_value(30000),
      "close a TCP connection whose frame stops moving this long")(
      "ack-timeout", po::value(&ack_timeout)->default_value(verbs::kDefaultAckTimeout),
      "rdma://: each QP's local ACK timeout, 4.096 us * 2^N (0: rdma_cm's default)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
    if (ack_timeout > 31) throw po::error("--ack-timeout must be 0..31");
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
    urls.push_back(*url);
  }
  // Block the stop signals in every thread; main waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto brick = fops::Brick::create(export_dir);
  if (!brick) {
    std::cerr << "zcio-server: " << brick.error().toString() << "\n";
    return 1;
  }
  std::vector<std::unique_ptr<tcp::TcpServer>> tcp_servers;
  std::vector<std::unique_ptr<verbs::VerbsServer>> rdma_servers;
  for (const auto& url : urls) {
    uint16_t port = 0;
    if (url.scheme == "tcp") {
      tcp::ServerOptions options;
      options.host = url.host;
      options.port = url.port;
      options.threads = threads;
      options.frame_stall_timeout = std::chrono::milliseconds(stall_ms);
      auto server = tcp::TcpServer::start(options, **brick);
      if (!server) {
        std::cerr << "zcio-server: " << server.error().toString() << "\n";
        return 1;
      }
      port = (*server)->port();
      tcp_servers.push_back(std::move(*server));
    } else {
      verbs::VerbsServerOptions options;
      options.host = url.host;
      options.port = url.port;
      options.pool = (*brick)->options().pool;
      options.ack_timeout = static_cast<uint8_t>(ack_timeout);
      auto server = verbs::VerbsServer::start(options, **brick);
      if (!server) {
        std::cerr << "zcio-server: rdma://" << url.host << ":" << url.port << ": "
                  << server.error().toString() << "\n";
        return 1;
      }
      port = (*server)->port();
      rdma_servers.push_back(std::move(*server));
    }
    std::printf("listening on %s://%s:%u exporting %s\n", url.scheme.c_str(), url.host.c_str(),
                port, export_dir.c_str());
  }
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  ZCIO_LOG(kInfo, "signal ", sig, ": stopping");
  for (auto& s : tcp_servers) s->stop();
  for (auto& s : rdma_servers) s->stop();
  return 0;
}
