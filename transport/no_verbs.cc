// connectVerbs in a build without the verbs transport (ZCIO_WITH_VERBS=OFF).
#include "transport/connect.h"
#include "transport/verbs_link.h"

namespace zcio::transport::detail {

Result<std::unique_ptr<rpc::Transport>> connectVerbs(const std::string&, uint16_t,
                                                     const TransportOptions&) {
  return rdmaNotBuiltError();
}

}  // namespace zcio::transport::detail
