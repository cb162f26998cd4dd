#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

#include "iobuf/buffer_pool.h"
#include "iobuf/iobuf_vector.h"
#include "iobuf/memory_registrar.h"

namespace zcio::iobuf {
namespace {

TEST(BufferPool, ChunksArePageAlignedAndReused) {
  auto pool = BufferPool::create({.chunk_size = 5000, .chunks_per_slab = 2, .max_bytes = 1 << 20});
  EXPECT_EQ(pool->chunkSize(), 8192u);  // rounded up to pages
  std::byte* first = nullptr;
  {
    auto buf = pool->get();
    ASSERT_TRUE(buf.ok());
    first = (*buf)->data();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(first) % 4096, 0u);
    EXPECT_FALSE((*buf)->isUserMemory());
  }
  auto again = pool->get();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->data(), first);  // back on the free list, handed out again
  EXPECT_EQ(pool->slabBytes(), 2u * 8192);
}

TEST(BufferPool, CapFailsWithEnomemInsteadOfGrowing) {
  auto pool = BufferPool::create({.chunk_size = 4096, .chunks_per_slab = 1, .max_bytes = 8192});
  auto a = pool->get();
  auto b = pool->get();
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = pool->get();
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.error().code, ENOMEM);
  EXPECT_FALSE(pool->getVector(1 << 20).ok());
}

TEST(BufferPool, BuffersKeepThePoolAlive) {
  IoBufPtr survivor;
  {
    auto pool = BufferPool::create();
    survivor = *pool->get();
  }
  std::memset(survivor->data(), 0xab, survivor->size());  // ASan would flag a freed slab
  survivor.reset();
}

TEST(BufferPool, GetVectorCoversExactLength) {
  auto pool = BufferPool::create({.chunk_size = 4096, .chunks_per_slab = 4, .max_bytes = 1 << 20});
  auto v = pool->getVector(10000);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->totalLength(), 10000u);
  EXPECT_EQ(v->slices().size(), 3u);
  EXPECT_TRUE(pool->getVector(0).ok());
}

TEST(IoBufVector, WrapUserPointsAtCallerMemory) {
  std::vector<char> a(100), b(50);
  iovec iov[] = {{a.data(), a.size()}, {nullptr, 0}, {b.data(), b.size()}};
  auto v = IoBufVector::wrapUser(iov);
  EXPECT_EQ(v.totalLength(), 150u);
  ASSERT_EQ(v.slices().size(), 2u);  // empty segment dropped
  EXPECT_EQ(static_cast<void*>(v.slices()[0].data()), a.data());
  EXPECT_TRUE(v.slices()[0].buf->isUserMemory());
}

TEST(IoBufVector, CopyToWalksMismatchedSegmentBoundaries) {
  std::vector<char> src(1000);
  std::iota(src.begin(), src.end(), 0);
  iovec in[] = {{src.data(), 7}, {src.data() + 7, 500}, {src.data() + 507, 493}};
  auto v = IoBufVector::wrapUser(in);
  std::vector<char> dst(1000, 0);
  iovec out[] = {{dst.data(), 1}, {dst.data() + 1, 333}, {dst.data() + 334, 666}};
  EXPECT_EQ(v.copyTo(out), 1000u);
  EXPECT_EQ(dst, src);
}

TEST(IoBufVector, CopyToStopsAtDestinationCapacity) {
  std::vector<char> src(100, 'x');
  iovec in{src.data(), src.size()};
  auto v = IoBufVector::wrapUser({&in, 1});
  std::vector<char> dst(60, 0);
  iovec out{dst.data(), 50};
  EXPECT_EQ(v.copyTo({&out, 1}), 50u);
  EXPECT_EQ(dst[49], 'x');
  EXPECT_EQ(dst[50], 0);
}

TEST(IoBufVector, TruncateKeepsAPrefix) {
  auto pool = BufferPool::create({.chunk_size = 4096, .chunks_per_slab = 4, .max_bytes = 1 << 20});
  auto v = *pool->getVector(12288);
  v.truncate(5000);
  EXPECT_EQ(v.totalLength(), 5000u);
  EXPECT_EQ(v.slices().size(), 2u);
  EXPECT_EQ(v.slices()[1].length, 904u);
  v.truncate(0);
  EXPECT_EQ(v.totalLength(), 0u);
  EXPECT_TRUE(v.empty());
}

TEST(NullRegistrar, HandsOutZeroKeysAndCounts) {
  NullRegistrar registrar;
  char byte;
  auto keys = registrar.registerRange(&byte, 1, kLocalWrite | kRemoteWrite);
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->rkey, 0u);
  EXPECT_EQ(registrar.registrations(), 1u);
  EXPECT_FALSE(registrar.registerRange(nullptr, 10, kRemoteRead).ok());
}

}  // namespace
}  // namespace zcio::iobuf
