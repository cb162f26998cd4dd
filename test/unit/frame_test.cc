#include "rpc/frame.h"

#include <gtest/gtest.h>

namespace zcio::rpc {
namespace {

Preamble sample() {
  Preamble p;
  p.type = FrameType::kReply;
  p.header_length = 123;
  p.xid = 0x0102030405060708ull;
  p.payload_length = 1 << 20;
  return p;
}

TEST(Frame, RoundTripsEveryField) {
  auto decoded = decodePreamble(encodePreamble(sample()));
  ASSERT_TRUE(decoded.ok()) << decoded.error().toString();
  EXPECT_EQ(decoded->type, FrameType::kReply);
  EXPECT_EQ(decoded->header_length, 123u);
  EXPECT_EQ(decoded->xid, 0x0102030405060708ull);
  EXPECT_EQ(decoded->payload_length, 1u << 20);
}

TEST(Frame, IsLittleEndianOnTheWire) {
  auto bytes = encodePreamble(sample());
  EXPECT_EQ(bytes[0], std::byte{'Z'});
  EXPECT_EQ(bytes[3], std::byte{'O'});
  EXPECT_EQ(bytes[16], std::byte{0x08});  // xid's low byte first
  EXPECT_EQ(bytes[23], std::byte{0x01});
}

TEST(Frame, RejectsBadMagic) {
  auto bytes = encodePreamble(sample());
  bytes[0] = std::byte{'X'};
  auto r = decodePreamble(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTO);
  EXPECT_NE(r.error().what.find("magic"), std::string::npos);
}

TEST(Frame, RejectsOtherVersions) {
  auto bytes = encodePreamble(sample());
  bytes[4] = std::byte{2};
  auto r = decodePreamble(bytes);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EPROTONOSUPPORT);
}

TEST(Frame, RejectsUnknownTypeFlagsAndReserved) {
  for (size_t index : {size_t{5}, size_t{6}, size_t{12}}) {
    auto bytes = encodePreamble(sample());
    bytes[index] = std::byte{0x7f};
    EXPECT_FALSE(decodePreamble(bytes).ok()) << "byte " << index;
  }
}

TEST(Frame, RejectsOversizeHeaderBeforeAllocating) {
  Preamble p = sample();
  p.header_length = kMaxHeaderLength + 1;
  auto r = decodePreamble(encodePreamble(p));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EMSGSIZE);
  p.header_length = kMaxHeaderLength;
  EXPECT_TRUE(decodePreamble(encodePreamble(p)).ok());
}

TEST(Frame, RejectsPayloadOverTheReceiversLimit) {
  Preamble p = sample();
  p.payload_length = kMaxPayloadLength + 1;
  EXPECT_FALSE(decodePreamble(encodePreamble(p)).ok());
  p.payload_length = 4096;
  EXPECT_FALSE(decodePreamble(encodePreamble(p), 4095).ok());
  EXPECT_TRUE(decodePreamble(encodePreamble(p), 4096).ok());
}

}  // namespace
}  // namespace zcio::rpc
