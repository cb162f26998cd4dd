// Microbenchmarks of the pieces on every call's path: request table,
// frame codec, pool buffers, and the regular path's copy.
#include <benchmark/benchmark.h>

#include <cstring>
#include <vector>

#include "iobuf/buffer_pool.h"
#include "iobuf/iobuf_vector.h"
#include "rpc/frame.h"
#include "rpc/request_table.h"
#include "rpc/zcio.pb.h"

namespace {

using namespace zcio;

void BM_RequestTableInsertFindErase(benchmark::State& state) {
  rpc::RequestTable table(1024);
  auto call = std::make_shared<rpc::Call>();
  auto deadline = std::chrono::steady_clock::now();
  for (auto _ : state) {
    auto e = table.insert(call, deadline);
    auto* found = table.find((*e)->xid);
    benchmark::DoNotOptimize(found);
    table.erase(found);
  }
}
BENCHMARK(BM_RequestTableInsertFindErase);

void BM_PreambleEncodeDecode(benchmark::State& state) {
  rpc::Preamble p;
  p.type = rpc::FrameType::kReply;
  p.header_length = 20;
  p.xid = 123456;
  p.payload_length = 1 << 20;
  for (auto _ : state) {
    auto bytes = rpc::encodePreamble(p);
    auto back = rpc::decodePreamble(bytes);
    benchmark::DoNotOptimize(back);
  }
}
BENCHMARK(BM_PreambleEncodeDecode);

void BM_ReadCallHeaderSerializeParse(benchmark::State& state) {
  rpc::pb::Call call;
  call.set_op(rpc::pb::OP_READ);
  call.set_fh(7);
  call.set_offset(1ull << 30);
  call.set_length(1 << 20);
  std::string bytes;
  for (auto _ : state) {
    call.SerializeToString(&bytes);
    rpc::pb::Call back;
    back.ParseFromString(bytes);
    benchmark::DoNotOptimize(back);
  }
}
BENCHMARK(BM_ReadCallHeaderSerializeParse);

void BM_PoolGetVector(benchmark::State& state) {
  auto pool = iobuf::BufferPool::create();
  for (auto _ : state) {
    auto v = pool->getVector(static_cast<size_t>(state.range(0)));
    benchmark::DoNotOptimize(v);
  }
}
BENCHMARK(BM_PoolGetVector)->Arg(4096)->Arg(1 << 20);

// The copy the direct path removes, per block size.
void BM_RegularPathCopy(benchmark::State& state) {
  size_t n = static_cast<size_t>(state.range(0));
  auto pool = iobuf::BufferPool::create();
  auto src = *pool->getVector(n);
  std::vector<char> dst(n);
  iovec out{dst.data(), n};
  for (auto _ : state) benchmark::DoNotOptimize(src.copyTo({&out, 1}));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * n));
}
BENCHMARK(BM_RegularPathCopy)->Arg(4096)->Arg(64 << 10)->Arg(1 << 20);

}  // namespace

BENCHMARK_MAIN();
