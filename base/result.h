// Result<T>: the error type that crosses every zcio API (no exceptions do).
// Shaped like std::expected so it can be swapped for it once clang supports
// <expected> on libstdc++; until then this shim builds with g++ 12 and clang 14.
#pragma once

#include <cerrno>
#include <string>
#include <utility>
#include <variant>

namespace zcio {

// An error: an errno-style code (positive), plus a human-readable reason that
// names the failing call or check. The first function that decides an error
// writes the reason; callers pass it up unchanged.
struct Error {
  int code = EIO;
  std::string what;

  std::string toString() const;
};

Error makeError(int code, std::string what);
// Error from errno after a failed libc call named `call`.
Error errnoError(const char* call);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit like expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> okResult() {
  return {};
}

}  // namespace zcio

#define ZCIO_RETURN_IF_ERROR(expr) \
  do {                             \
    auto zcio_status_ = (expr);    \
    if (!zcio_status_.ok()) {      \
      return zcio_status_.error(); \
    }                              \
  } while (0)
