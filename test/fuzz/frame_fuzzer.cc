// The frame and header decoder: the first 32 bytes as a preamble, the rest as
// a Call and as a Reply header. Properties:
//  - a preamble that decodes re-encodes to the very same bytes (nothing the
//    decoder accepts is lost or normalised away);
//  - a lower payload limit accepts a subset of what the default accepts, and
//    never a payload over that limit;
//  - a header that parses serialises to bytes that parse back to the same
//    serialisation.
#include <cstring>
#include <string>

#include "rpc/frame.h"
#include "rpc/zcio.pb.h"
#include "test/fuzz/fuzz_support.h"

namespace {

using namespace zcio;

template <typename Message>
void checkHeader(const uint8_t* data, size_t size, const char* name) {
  Message first;
  if (!first.ParseFromArray(data, static_cast<int>(size))) return;
  std::string once = first.SerializeAsString();
  Message second;
  if (!second.ParseFromString(once)) {
    fuzz::fuzzFail(std::string(name) + ": its own serialisation does not parse");
  }
  if (second.SerializeAsString() != once) {
    fuzz::fuzzFail(std::string(name) + ": serialisation is not stable across a round trip");
  }
}

void checkPreamble(const uint8_t* data) {
  rpc::PreambleBytes bytes;
  std::memcpy(bytes.data(), data, bytes.size());
  auto decoded = rpc::decodePreamble(bytes);
  constexpr uint64_t kLowLimit = 4096;
  auto limited = rpc::decodePreamble(bytes, kLowLimit);
  if (limited && !decoded)
    fuzz::fuzzFail("a lower payload limit accepted what the default refused");
  if (limited && limited->payload_length > kLowLimit) {
    fuzz::fuzzFail("payload length over the limit accepted");
  }
  if (!decoded) return;
  if (decoded->header_length > rpc::kMaxHeaderLength ||
      decoded->payload_length > rpc::kMaxPayloadLength) {
    fuzz::fuzzFail("length over the protocol limit accepted");
  }
  if (rpc::encodePreamble(*decoded) != bytes) {
    fuzz::fuzzFail("encodePreamble(decodePreamble(x)) != x");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size >= rpc::kPreambleSize) {
    checkPreamble(data);
    data += rpc::kPreambleSize;
    size -= rpc::kPreambleSize;
  }
  checkHeader<rpc::pb::Call>(data, size, "Call");
  checkHeader<rpc::pb::Reply>(data, size, "Reply");
  return 0;
}
