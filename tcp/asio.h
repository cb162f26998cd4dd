// Include Asio through this header only: Boost 1.74's Asio uses std::exchange
// without including <utility>, which g++ 12 in C++20 mode rejects.
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace zcio::tcp {
namespace asio = boost::asio;
using boost::system::error_code;

// Asio's default completion condition caps every read/write syscall at
// 64 KiB; a 1 MiB reply then costs 16+ writev calls. These let one syscall
// move up to `limit` bytes.
struct TransferAllUpTo {
  size_t limit;
  size_t operator()(const error_code& ec, size_t) const { return ec ? 0 : limit; }
};
inline constexpr size_t kUnlimitedTransfer = size_t{1} << 30;
}  // namespace zcio::tcp
