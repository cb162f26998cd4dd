// Writes the committed seed corpus: a handful of valid inputs per fuzz target
// (each target's input layout is described at the top of its *_fuzzer.cc).
// Usage: zcio_fuzz_make_corpus DIR   (writes DIR/<target>/<name>)
#include <fcntl.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test/fuzz/fuzz_support.h"

namespace {

using namespace zcio;
namespace pb = rpc::pb;

std::filesystem::path g_root;

void put(const std::string& target, const std::string& name, const std::string& bytes) {
  auto dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) fuzz::fuzzFail("cannot write " + (dir / name).string());
}

pb::Call call(pb::Op op, const std::string& path = {}, uint64_t fh = 0, uint64_t offset = 0,
              uint64_t length = 0, uint32_t flags = 0) {
  pb::Call c;
  c.set_op(op);
  if (!path.empty()) c.set_path(path);
  c.set_fh(fh);
  c.set_offset(offset);
  c.set_length(length);
  c.set_flags(flags);
  return c;
}

pb::Reply reply(int error = 0, uint64_t fh = 0, uint64_t count = 0, uint64_t size = 0) {
  pb::Reply r;
  r.set_error(error);
  if (error != 0) r.set_message("refused");
  r.set_fh(fh);
  r.set_count(count);
  if (size != 0 || fh != 0) {
    r.mutable_attr()->set_size(size);
    r.mutable_attr()->set_mode(0100644);
    r.mutable_attr()->set_ino(42);
  }
  return r;
}

std::string callFrame(uint64_t xid, const pb::Call& c, const std::string& payload = {}) {
  return test::encodeFrame(rpc::FrameType::kCall, xid, c.SerializeAsString(), payload);
}

std::string record(const pb::Call& c, const std::string& payload = {}) {
  return fuzz::framedRecord(c.SerializeAsString(), payload);
}

void frameSeeds() {
  put("frame", "stat", callFrame(1, call(pb::OP_STAT, "probe")));
  put("frame", "open", callFrame(2, call(pb::OP_OPEN, "a", 0, 0, 0, pb::OPEN_READ)));
  put("frame", "read", callFrame(3, call(pb::OP_READ, {}, 1, 0, 4096)));
  put("frame", "write", callFrame(4, call(pb::OP_WRITE, {}, 1, 10, 5), "hello"));
  put("frame", "reply-attr",
      test::encodeFrame(rpc::FrameType::kReply, 5, reply(0, 1, 0, 5).SerializeAsString(), {}));
  put("frame", "reply-error",
      test::encodeFrame(rpc::FrameType::kReply, 6, reply(ENOENT).SerializeAsString(), {}));
}

pb::Call hello(uint32_t step, const std::string& bytes) {
  pb::Call c;
  c.set_op(pb::OP_HELLO);
  c.mutable_hello()->set_step(step);
  if (step == 1) {
    c.mutable_hello()->set_nonce(bytes);
  } else {
    c.mutable_hello()->set_proof(bytes);
  }
  return c;
}

pb::Reply helloReply(const std::string& auth) {
  pb::Reply r;
  r.mutable_hello()->set_auth(auth);
  if (auth != "none") {
    r.mutable_hello()->set_nonce(std::string(rpc::kNonceSize, 'n'));
    r.mutable_hello()->set_proof(std::string(32, 'p'));
  }
  return r;
}

void serverSeeds() {
  const std::string framed(1, '\1');
  const std::string raw(1, '\0');
  const std::string keyed(1, '\3');  // framed, to the server with a key
  put("server", "hello-none-stat",
      framed + record(hello(1, std::string(rpc::kNonceSize, 'c'))) +
          record(call(pb::OP_STAT, "probe")));
  put("server", "keyed-hello-steps",
      keyed + record(hello(1, std::string(rpc::kNonceSize, 'c'))) +
          record(hello(2, std::string(32, 'p'))) + record(call(pb::OP_STAT, "probe")));
  put("server", "raw-stat", raw + callFrame(1, call(pb::OP_STAT, "probe")));
  put("server", "raw-open-read",
      raw + callFrame(1, call(pb::OP_OPEN, "a", 0, 0, 0, pb::OPEN_READ)) +
          callFrame(2, call(pb::OP_READ, {}, 1, 0, 5)));
  put("server", "framed-open-read-close",
      framed + record(call(pb::OP_OPEN, "dir/b", 0, 0, 0, pb::OPEN_READ)) +
          record(call(pb::OP_READ, {}, 1, 100, 1000)) + record(call(pb::OP_FSTAT, {}, 1)) +
          record(call(pb::OP_CLOSE, {}, 1)));
  put("server", "framed-create-write-fsync",
      framed +
          record(call(pb::OP_OPEN, "new", 0, 0, 0,
                      pb::OPEN_READ | pb::OPEN_WRITE | pb::OPEN_CREATE | pb::OPEN_TRUNCATE)) +
          record(call(pb::OP_WRITE, {}, 1, 3, 5), "hello") + record(call(pb::OP_FSYNC, {}, 1)) +
          record(call(pb::OP_READ, {}, 1, 0, 8)));
  put("server", "framed-escape",
      framed + record(call(pb::OP_OPEN, "../x", 0, 0, 0, pb::OPEN_WRITE | pb::OPEN_CREATE)) +
          record(call(pb::OP_STAT, "/etc/passwd")));
}

// Client inputs: op byte (see client_fuzzer.cc's Op), flags byte, then what
// the fake server answers.
void clientSeeds() {
  auto framedReply = [](const pb::Reply& r, const std::string& payload = {}) {
    return fuzz::framedRecord(r.SerializeAsString(), payload);
  };
  enum { kOpen, kStat, kFstat, kRead, kReadDirect, kWrite, kFsync, kClose, kHello };
  auto input = [](int op, int flags, const std::string& stream) {
    return std::string(1, static_cast<char>(op)) + std::string(1, static_cast<char>(flags)) +
           stream;
  };
  put("client", "open", input(kOpen, 1, framedReply(reply(0, 7, 0, 5))));
  put("client", "stat", input(kStat, 1, framedReply(reply(0, 0, 0, 5))));
  put("client", "fstat-error", input(kFstat, 1, framedReply(reply(EBADF))));
  put("client", "read", input(kRead, 1 | 4, framedReply(reply(0, 0, 5), "hello")));
  put("client", "read-direct-iovs",
      input(kReadDirect, 1 | 16, framedReply(reply(0, 0, 50), std::string(50, 'd'))));
  put("client", "write", input(kWrite, 1, framedReply(reply(0, 0, 100))));
  // A server claiming more bytes written than were sent (found by this target).
  put("client", "write-count-over", input(kWrite, 1, framedReply(reply(0, 0, 116))));
  put("client", "fsync", input(kFsync, 1, framedReply(reply())));
  put("client", "close", input(kClose, 1, framedReply(reply())));
  put("client", "hello-none", input(kHello, 1, framedReply(helloReply("none"))));
  put("client", "hello-keyed-hmac", input(kHello, 1 | 32, framedReply(helloReply("hmac-sha256"))));
  // Raw: a whole reply frame whose xid the harness patches in.
  put("client", "raw-read",
      input(kRead, 2,
            test::encodeFrame(rpc::FrameType::kReply, 0, reply(0, 0, 5).SerializeAsString(),
                              "hello")));
}

// The C API target reads its input through FuzzedDataProvider; these are
// just varied starting points.
void cApiSeeds() {
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 6; ++i) {
    std::string bytes(static_cast<size_t>(32 << i), '\0');
    for (char& c : bytes) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(state >> 56);
    }
    put("c_api", "random-" + std::to_string(bytes.size()), bytes);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  frameSeeds();
  serverSeeds();
  clientSeeds();
  cApiSeeds();
  return 0;
}
