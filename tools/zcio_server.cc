// zcio-server: exports one directory over zcio until SIGINT/SIGTERM.
//
//   zcio-server --export DIR --listen tcp://127.0.0.1:7700 [--threads N]
//
// Prints "listening on tcp://HOST:PORT" once ready (PORT resolved when 0 was
// asked for), then one log line per connection and per error on stderr.
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "base/log.h"
#include "fops/brick.h"
#include "fops/url.h"
#include "tcp/server.h"

namespace po = boost::program_options;
using namespace zcio;

int main(int argc, char** argv) {
  std::string export_dir;
  std::string listen;
  unsigned threads = 1;
  po::options_description desc("zcio-server options");
  desc.add_options()("help,h", "show this help")(
      "export", po::value(&export_dir)->required(), "directory to export")(
      "listen", po::value(&listen)->default_value("tcp://127.0.0.1:7700"),
      "URL to listen on (port 0 picks a free one)")(
      "threads", po::value(&threads)->default_value(1), "I/O threads");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "zcio-server: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  auto url = fops::parseUrl(listen);
  if (!url) {
    std::cerr << "zcio-server: " << url.error().toString() << "\n";
    return 2;
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
  tcp::ServerOptions options;
  options.host = url->host;
  options.port = url->port;
  options.threads = threads;
  auto server = tcp::TcpServer::start(options, **brick);
  if (!server) {
    std::cerr << "zcio-server: " << server.error().toString() << "\n";
    return 1;
  }
  std::printf("listening on tcp://%s:%u exporting %s\n", url->host.c_str(), (*server)->port(),
              export_dir.c_str());
  std::fflush(stdout);
  int sig = 0;
  sigwait(&signals, &sig);
  ZCIO_LOG(kInfo, "signal ", sig, ": stopping after ", (*server)->counters().calls.load(),
           " calls on ", (*server)->counters().connections.load(), " connections");
  (*server)->stop();
  return 0;
}
