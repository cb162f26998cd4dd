// Writes 1 MiB to a file on a zcio server and reads it back with the C++ API,
// direct (into and out of our own vectors), then prints the counters.
//   roundtrip_cpp URL [NAME]     (the key: $ZCIO_KEY_FILE)
#include <fcntl.h>

#include <cstdio>
#include <vector>

#include "fops/client.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s URL [NAME]\n", argv[0]);
    return 2;
  }
  const char* name = argc > 2 ? argv[2] : "example-cpp.bin";
  auto client = zcio::fops::Client::connect(argv[1]);
  if (!client) {
    std::fprintf(stderr, "connect: %s\n", client.error().toString().c_str());
    return 1;
  }
  std::vector<char> out(1 << 20), in(1 << 20);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<char>(i * 13 + 1);
  auto fh = (*client)->open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
  if (!fh) {
    std::fprintf(stderr, "open: %s\n", fh.error().toString().c_str());
    return 1;
  }
  iovec wv{out.data(), out.size()}, rv{in.data(), in.size()};
  auto written = (*client)->pwritevDirect(*fh, {&wv, 1}, 0);
  auto got = (*client)->preadvDirect(*fh, {&rv, 1}, 0);
  bool same = written && got && *got == in.size() && in == out;
  auto stats = (*client)->stats();
  std::printf("c++: %s over %s: %s; requests %llu, bytes copied %llu\n", name,
              (*client)->describe().c_str(), same ? "match" : "MISMATCH",
              static_cast<unsigned long long>(stats.requests),
              static_cast<unsigned long long>(stats.bytes_copied));
  if (!(*client)->close(*fh)) return 1;
  return same ? 0 : 1;
}
