#include "base/log.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace zcio::log {
namespace {

Level levelFromEnv() {
  const char* env = std::getenv("ZCIO_LOG");
  if (env == nullptr) return Level::kInfo;
  if (std::strcmp(env, "error") == 0) return Level::kError;
  if (std::strcmp(env, "warn") == 0) return Level::kWarn;
  if (std::strcmp(env, "debug") == 0) return Level::kDebug;
  return Level::kInfo;
}

std::atomic<int>& currentLevel() {
  static std::atomic<int> level{static_cast<int>(levelFromEnv())};
  return level;
}

const char* name(Level level) {
  switch (level) {
    case Level::kError:
      return "E";
    case Level::kWarn:
      return "W";
    case Level::kInfo:
      return "I";
    case Level::kDebug:
      return "D";
  }
  return "?";
}

}  // namespace

bool enabled(Level level) {
  return static_cast<int>(level) <= currentLevel().load(std::memory_order_relaxed);
}

void setLevel(Level level) {
  currentLevel().store(static_cast<int>(level));
}

void write(Level level, std::string_view line) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  char prefix[48];
  int n = std::snprintf(prefix, sizeof prefix, "%s %lld.%03lld [%d] ", name(level),
                        static_cast<long long>(ms / 1000), static_cast<long long>(ms % 1000),
                        static_cast<int>(getpid()));
  std::string out(prefix, static_cast<size_t>(n));
  out.append(line);
  out.push_back('\n');
  // One write so concurrent lines do not interleave.
  ssize_t ignored = ::write(STDERR_FILENO, out.data(), out.size());
  (void)ignored;
}

}  // namespace zcio::log
