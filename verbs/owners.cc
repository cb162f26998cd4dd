#include "verbs/owners.h"

#include <cstring>

#include "base/log.h"

namespace zcio::verbs {

int deallocMemoryWindow(ibv_mw* mw) {
  return ibv_dealloc_mw(mw);
}

void logTeardownFailure(const char* call, int code) {
  ZCIO_LOG(kWarn, call, " failed: ", std::strerror(code));
}

}  // namespace zcio::verbs
