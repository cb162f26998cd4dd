// Refusal: how the TCP server turns a client away without leaving it to a
// timeout. It reads the client's first call (whatever it is: the preamble
// and header, within kRefusalDeadline and the header limit), answers it with
// an error reply carrying the reason (EUSERS, EACCES, EMFILE), half-closes,
// and drains what the client still sends until it closes or the deadline
// passes (closing with unread bytes would reset the connection and could
// destroy the reply before the client reads it).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "base/result.h"
#include "rpc/frame.h"
#include "tcp/asio.h"

namespace zcio::tcp {

inline constexpr std::chrono::milliseconds kRefusalDeadline{2000};

// Lives on its socket's io_context thread; keeps itself alive until done.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  // `done` runs once, on the socket's thread, after the socket is closed.
  Refusal(asio::ip::tcp::socket socket, Error why, std::function<void(Refusal*)> done);
  void start();
  // Safe from any thread.
  void closeAsync();

 private:
  void onPreamble();
  void onHeader();
  void drain();
  void finish();

  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;
  Error why_;
  std::function<void(Refusal*)> done_;
  rpc::PreambleBytes preamble_{};
  rpc::Preamble call_;
  std::string header_;
  std::string reply_;
  char scratch_[4096];
  bool finished_ = false;
};

}  // namespace zcio::tcp
