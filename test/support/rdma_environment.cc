// When the rdma variant of a suite runs (ZCIO_TEST_TRANSPORT=rdma), every
// test is skipped, with the reason, on a machine without an RDMA device;
// soft-roce-ci/run provides one (real rdma_rxe in a VM).
#include <gtest/gtest.h>

#include "test/support/server_process.h"
#include "verbs/cm.h"

namespace zcio::test {
namespace {

class RdmaEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (transportUnderTest() != "rdma") return;
    auto present = verbs::rdmaDevicePresent();
    if (!present) {
      GTEST_SKIP() << "rdma variant skipped: " << present.error().toString()
                   << " — run it on Soft-RoCE with soft-roce-ci/run";
    }
  }
};

const auto* const kRegistered = ::testing::AddGlobalTestEnvironment(new RdmaEnvironment);

}  // namespace
}  // namespace zcio::test
