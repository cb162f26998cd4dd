// Include Asio through this header only: Boost 1.74's Asio uses std::exchange
// without including <utility>, which g++ 12 in C++20 mode rejects.
#pragma once

#include <utility>

#include <boost/asio.hpp>

namespace zcio::tcp {
namespace asio = boost::asio;
using boost::system::error_code;
}  // namespace zcio::tcp
