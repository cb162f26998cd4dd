#include "test/support/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "test/support/temp_dir.h"

namespace zcio::test {

ServerProcess::ServerProcess(const std::string& export_dir, std::vector<std::string> extra_args,
                             ServerProcessOptions options)
    : tcp_host_(options.tcp_host) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  char log_template[] = "/tmp/zcio-server-log-XXXXXX";
  int log_fd = mkstemp(log_template);
  if (log_fd < 0) throw std::runtime_error("mkstemp failed");
  log_path_ = log_template;
  // ZCIO_TEST_SERVER_BINARY: another build's server (a copy kept aside
  // while this tree is rebuilt, or an older release).
  const char* binary = std::getenv("ZCIO_TEST_SERVER_BINARY");
  std::vector<std::string> args = {
      binary != nullptr && *binary != '\0' ? binary : ZCIO_SERVER_BINARY, "--export", export_dir,
      "--listen", "tcp://" + tcp_host_ + ":0"};
  bool rdma = transportUnderTest() == "rdma";
  if (rdma) {
    args.push_back("--listen");
    std::string host = options.rdma_host.empty() ? rdmaAddress() : options.rdma_host;
    bool v6 = host.find(':') != std::string::npos;
    args.push_back("rdma://" + (v6 ? "[" + host + "]" : host) + ":0");
  }
  // Tests choose their authentication; the rest speak raw frames or plain clients.
  bool chose_auth = false;
  for (const auto& a : extra_args) chose_auth |= a == "--key-file" || a == "--auth";
  if (!chose_auth) {
    args.push_back("--auth");
    args.push_back("none");
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    // A crashed test must not leave its server behind.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (options.max_open_files != 0) {
      rlimit limit{options.max_open_files, options.max_open_files};
      if (setrlimit(RLIMIT_NOFILE, &limit) != 0) _exit(126);
    }
    dup2(out[1], STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close(out[0]);
    close(out[1]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(log_fd);
  // One stdout line per listener: "listening on tcp://127.0.0.1:PORT ..."
  auto readLine = [&] {
    std::string text;
    char c;
    while (read(out[0], &c, 1) == 1 && c != '\n') text.push_back(c);
    return text;
  };
  std::string line = readLine();
  if (rdma) {
    std::string second = readLine();
    auto at = second.find("rdma://");
    if (at == std::string::npos) {
      close(out[0]);
      stop();
      throw std::runtime_error("zcio-server did not listen on rdma: '" + second +
                               "' log: " + log());
    }
    rdma_url_ = second.substr(at, second.find(' ', at) - at);
  }
  close(out[0]);
  auto pos = line.find(tcp_host_ + ":");
  if (pos == std::string::npos) {
    stop();
    throw std::runtime_error("zcio-server did not start: '" + line + "' log: " + log());
  }
  port_ = static_cast<uint16_t>(std::stoi(line.substr(pos + tcp_host_.size() + 1)));
}

std::string transportUnderTest() {
  const char* env = std::getenv("ZCIO_TEST_TRANSPORT");
  return env != nullptr && std::string(env) == "rdma" ? "rdma" : "tcp";
}

std::string rdmaAddress() {
  const char* env = std::getenv("ZCIO_RXE_ADDR");
  return env != nullptr ? env : "10.77.0.1";
}

ServerProcess::~ServerProcess() {
  stop();
  unlink(log_path_.c_str());
}

bool ServerProcess::alive() {
  if (exit_status_ != -1 || pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return false;
  }
  return true;
}

int ServerProcess::stop() {
  if (pid_ <= 0) return exit_status_;
  if (exit_status_ == -1 && alive()) {
    kill(pid_, SIGTERM);
    int status = 0;
    // Bounded wait: a server that ignores SIGTERM is a bug worth a kill.
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (exit_status_ == -1) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      exit_status_ = 137;
    }
  }
  return exit_status_;
}

std::string ServerProcess::log() const {
  return readLocalFile(log_path_);
}

}  // namespace zcio::test
