// Minimal leveled logging to stderr. The level comes from ZCIO_LOG
// (error|warn|info|debug; default info). Thread-safe: one write(2) per line.
#pragma once

#include <string_view>

namespace zcio::log {

enum class Level { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

bool enabled(Level level);
void write(Level level, std::string_view line);
void setLevel(Level level);

}  // namespace zcio::log

#define ZCIO_LOG(level, ...)                                                           \
  do {                                                                                 \
    if (::zcio::log::enabled(::zcio::log::Level::level)) {                             \
      ::zcio::log::write(::zcio::log::Level::level, ::zcio::log::format(__VA_ARGS__)); \
    }                                                                                  \
  } while (0)

#include <sstream>
#include <string>

namespace zcio::log {
template <typename... Args>
std::string format(Args&&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}
}  // namespace zcio::log
