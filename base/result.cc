#include "base/result.h"

#include <cstring>

namespace zcio {

std::string Error::toString() const {
  return what + " (" + std::strerror(code) + ")";
}

Error makeError(int code, std::string what) {
  return Error{code, std::move(what)};
}

Error errnoError(const char* call) {
  int saved = errno;
  return Error{saved, std::string(call) + " failed"};
}

}  // namespace zcio
