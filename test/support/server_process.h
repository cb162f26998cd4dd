// A real zcio-server child process exporting a directory on a free loopback
// port. Stopped with SIGTERM (by its PID) at scope end; its exit status is
// checked so a server crash fails the test that caused it.
//
// The transport under test comes from ZCIO_TEST_TRANSPORT (tcp | rdma; the
// rdma ctest entries set it). With rdma the server also listens on
// rdma://$ZCIO_RXE_ADDR:0 and url() names that listener; the TCP listener
// stays for raw-socket tests (tcpUrl(), port()).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace zcio::test {

struct ServerProcessOptions {
  // RLIMIT_NOFILE (soft and hard) set in the child before exec; 0 keeps ours.
  uint64_t max_open_files = 0;
  // The TCP listener's address (an address inside a test's own network
  // namespace pair, say); tcpUrl() and port() name it.
  std::string tcp_host = "127.0.0.1";
  // The rdma:// listener's host (an IPv6 address unbracketed); empty:
  // rdmaAddress().
  std::string rdma_host;
};

class ServerProcess {
 public:
  explicit ServerProcess(const std::string& export_dir, std::vector<std::string> extra_args = {},
                         ServerProcessOptions options = {});
  ~ServerProcess();
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  uint16_t port() const { return port_; }  // the TCP listener's
  std::string tcpUrl() const { return "tcp://" + tcp_host_ + ":" + std::to_string(port_); }
  // The listener of the transport under test.
  std::string url() const { return rdma_url_.empty() ? tcpUrl() : rdma_url_; }
  pid_t pid() const { return pid_; }
  // True while the process has not exited.
  bool alive();
  // Sends SIGTERM, waits; returns the exit status (0 = clean). Idempotent.
  int stop();
  // Everything the server wrote to stderr so far (its log).
  std::string log() const;

 private:
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string tcp_host_;
  std::string rdma_url_;
  int exit_status_ = -1;
  std::string log_path_;
};

// "tcp" or "rdma", from ZCIO_TEST_TRANSPORT.
std::string transportUnderTest();
// Address of the Soft-RoCE device in the test VM (ZCIO_RXE_ADDR).
std::string rdmaAddress();

}  // namespace zcio::test
