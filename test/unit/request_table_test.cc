#include "rpc/request_table.h"

#include <gtest/gtest.h>

#include <set>

namespace zcio::rpc {
namespace {

auto later() {
  return std::chrono::steady_clock::now() + std::chrono::seconds(1);
}

TEST(RequestTable, InsertFindErase) {
  RequestTable table(4);
  auto call = std::make_shared<Call>();
  auto e = table.insert(call, later());
  ASSERT_TRUE(e.ok());
  uint64_t xid = (*e)->xid;
  EXPECT_EQ(table.find(xid), *e);
  EXPECT_EQ((*e)->call, call);
  EXPECT_EQ((*e)->state, CallState::kQueued);
  EXPECT_EQ(table.inUse(), 1u);
  table.erase(*e);
  EXPECT_EQ(table.find(xid), nullptr);
  EXPECT_EQ(table.inUse(), 0u);
}

// The table's state is the call's: mirrored into the Call, where any thread
// can ask it, and kDone once the slot is freed.
TEST(RequestTable, CallReadsTheStateItsEntryIsIn) {
  RequestTable table(4);
  auto call = std::make_shared<Call>();
  EXPECT_EQ(call->state.load(), CallState::kFree);
  auto e = table.insert(call, later());
  ASSERT_TRUE(e.ok());
  uint64_t xid = (*e)->xid;
  EXPECT_EQ(call->state.load(), CallState::kQueued);
  RequestTable::setState(**e, CallState::kReceiving);
  EXPECT_EQ(table.stateOf(xid), CallState::kReceiving);
  EXPECT_EQ(call->state.load(), CallState::kReceiving);
  EXPECT_STREQ(callStateName(call->state.load()), "receiving");
  table.erase(*e);
  EXPECT_EQ(table.stateOf(xid), CallState::kFree);
  EXPECT_EQ(call->state.load(), CallState::kDone);
}

TEST(RequestTable, XidsAreUniqueAcrossSlotReuse) {
  RequestTable table(2);
  std::set<uint64_t> seen;
  for (int i = 0; i < 1000; ++i) {
    auto e = table.insert(std::make_shared<Call>(), later());
    ASSERT_TRUE(e.ok());
    EXPECT_TRUE(seen.insert((*e)->xid).second) << "xid reused: " << (*e)->xid;
    table.erase(*e);
  }
}

TEST(RequestTable, StaleXidOfAReusedSlotIsNotFound) {
  RequestTable table(1);
  auto first = table.insert(std::make_shared<Call>(), later());
  uint64_t old_xid = (*first)->xid;
  table.erase(*first);
  auto second = table.insert(std::make_shared<Call>(), later());
  ASSERT_TRUE(second.ok());
  // Same slot, new generation: the late reply for the old call must not
  // reach the new call's memory.
  EXPECT_EQ(table.find(old_xid), nullptr);
  EXPECT_EQ(table.classify(old_xid), XidClass::kStale);
  EXPECT_EQ(table.classify((*second)->xid), XidClass::kLive);
}

TEST(RequestTable, ClassifiesNeverIssuedXids) {
  RequestTable table(4);
  auto e = table.insert(std::make_shared<Call>(), later());
  uint64_t xid = (*e)->xid;
  EXPECT_EQ(table.classify(0), XidClass::kNeverIssued);
  EXPECT_EQ(table.classify(xid + (uint64_t{1} << RequestTable::kSlotBits)),
            XidClass::kNeverIssued);  // future generation
  EXPECT_EQ(table.classify((uint64_t{1} << RequestTable::kSlotBits) | 100),
            XidClass::kNeverIssued);  // slot beyond capacity
  EXPECT_EQ(table.find(xid + (uint64_t{1} << RequestTable::kSlotBits)), nullptr);
}

TEST(RequestTable, FullTableRefusesWithEagain) {
  RequestTable table(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(table.insert(std::make_shared<Call>(), later()).ok());
  auto r = table.insert(std::make_shared<Call>(), later());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, EAGAIN);
}

TEST(RequestTable, ForEachLiveVisitsOnlyLiveEntries) {
  RequestTable table(8);
  auto a = table.insert(std::make_shared<Call>(), later());
  auto b = table.insert(std::make_shared<Call>(), later());
  table.erase(*a);
  int visited = 0;
  table.forEachLive([&](PendingRequest& e) {
    ++visited;
    EXPECT_EQ(e.xid, (*b)->xid);
  });
  EXPECT_EQ(visited, 1);
}

}  // namespace
}  // namespace zcio::rpc
