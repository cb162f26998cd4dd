// zcio-latency: per-call round trips of one zcio call at a time, the same shape as
// `zcio-raw-pair pingpong` (one request, wait for the whole reply, next), so that the two
// are compared sample for sample (median against median) rather than by mean.
//
//   zcio-latency --url tcp://127.0.0.1:PORT/FILE [--block 4096] [--iterations 10000]
//                [--warmup 100] [--mode direct|regular] [--op read|write] [--json]
//
// Every call reads (or writes) [0, block) of FILE, as the raw pair's pingpong does.
// Prints min / median / p99 / max / mean in microseconds; with --json one line:
//   {"tool":"zcio","op":...,"mode":...,"block":B,"lat_us_min":...,"lat_us_median":...,
//    "lat_us_p99":...,"lat_us_max":...,"lat_us_mean":...,"cpu_ns_per_call":...}
// Exit: 0 ok, 1 runtime error, 2 usage error.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <numeric>
#include <string>
#include <vector>

#include "fops/client.h"
#include "fops/url.h"

namespace po = boost::program_options;
using namespace zcio;

namespace {

uint64_t cpuNs() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto ns = [](const timeval& tv) {
    return static_cast<uint64_t>(tv.tv_sec) * 1'000'000'000ull +
           static_cast<uint64_t>(tv.tv_usec) * 1000ull;
  };
  return ns(ru.ru_utime) + ns(ru.ru_stime);
}

// Nearest-rank percentile of sorted samples, in microseconds (as raw_pair computes it).
double percentileUs(const std::vector<uint64_t>& sortedNs, double p) {
  const auto n = sortedNs.size();
  size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(n)));
  rank = std::clamp<size_t>(rank, 1, n);
  return static_cast<double>(sortedNs[rank - 1]) / 1000.0;
}

int fail(const std::string& what) {
  std::fprintf(stderr, "zcio-latency: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::string url_text;
  std::string mode_text = "direct";
  std::string op = "read";
  size_t block = 4096;
  uint64_t iterations = 10000;
  uint64_t warmup = 100;
  bool json = false;
  int64_t spin_us = -1;
  po::options_description desc("zcio-latency [options]");
  desc.add_options()("help,h", "show this help")("url", po::value(&url_text)->required(),
                                                 "tcp://host:port/file (the file must exist)")(
      "block", po::value(&block)->default_value(4096), "bytes per call")(
      "iterations", po::value(&iterations)->default_value(10000), "timed calls")(
      "warmup", po::value(&warmup)->default_value(100), "untimed calls first")(
      "mode", po::value(&mode_text)->default_value("direct"), "direct | regular")(
      "op", po::value(&op)->default_value("read"), "read | write")(
      "spin-us", po::value(&spin_us),
      "ClientOptions::sync_spin in microseconds (default: the library's)")(
      "json", po::bool_switch(&json), "print one JSON line");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "zcio-latency: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if ((mode_text != "direct" && mode_text != "regular") || (op != "read" && op != "write") ||
      block == 0 || block > fops::Client::maxIoSize() || iterations == 0) {
    std::cerr << "zcio-latency: bad --mode, --op, --block or --iterations\n" << desc << "\n";
    return 2;
  }
  const bool direct = mode_text == "direct";

  auto url = fops::parseUrl(url_text);
  if (!url) return fail(url.error().toString());
  fops::ClientOptions options;
  if (spin_us >= 0) options.sync_spin = std::chrono::microseconds(spin_us);
  auto client = fops::Client::connect(url->endpoint(), options);
  if (!client) return fail(client.error().toString());
  auto fh = (*client)->open(url->path, op == "read" ? O_RDONLY : O_WRONLY);
  if (!fh) return fail(fh.error().toString());

  std::vector<unsigned char> buffer(block, 0x5a);  // touched before timing
  const iovec iov{buffer.data(), block};
  std::vector<uint64_t> samples;
  samples.reserve(iterations);
  uint64_t cpu0 = 0;
  for (uint64_t i = 0; i < warmup + iterations; ++i) {
    if (i == warmup) cpu0 = cpuNs();
    const auto t0 = std::chrono::steady_clock::now();
    Result<size_t> n = op == "read" ? (direct ? (*client)->preadvDirect(*fh, {&iov, 1}, 0)
                                              : (*client)->preadv(*fh, {&iov, 1}, 0))
                                    : (direct ? (*client)->pwritevDirect(*fh, {&iov, 1}, 0)
                                              : (*client)->pwritev(*fh, {&iov, 1}, 0));
    const auto t1 = std::chrono::steady_clock::now();
    if (!n) return fail(op + ": " + n.error().toString());
    if (*n != block) return fail(op + " returned " + std::to_string(*n) + " bytes (file shorter?)");
    if (i >= warmup) {
      samples.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    }
  }
  const uint64_t cpu1 = cpuNs();
  (void)(*client)->close(*fh);

  const double meanUs =
      static_cast<double>(std::accumulate(samples.begin(), samples.end(), uint64_t{0})) /
      static_cast<double>(samples.size()) / 1000.0;
  std::sort(samples.begin(), samples.end());
  const double cpuPerCall = static_cast<double>(cpu1 - cpu0) / static_cast<double>(iterations);
  if (json) {
    std::printf(
        "{\"tool\":\"zcio\",\"op\":\"%s\",\"mode\":\"%s\",\"block\":%zu,\"iterations\":%llu,"
        "\"lat_us_min\":%.2f,\"lat_us_median\":%.2f,\"lat_us_p99\":%.2f,\"lat_us_max\":%.2f,"
        "\"lat_us_mean\":%.2f,\"cpu_ns_per_call\":%.0f}\n",
        op.c_str(), mode_text.c_str(), block, static_cast<unsigned long long>(iterations),
        percentileUs(samples, 0.0), percentileUs(samples, 0.5), percentileUs(samples, 0.99),
        percentileUs(samples, 1.0), meanUs, cpuPerCall);
  } else {
    std::printf(
        "zcio %s %s, block %zu, %llu calls: min %.2f us, median %.2f us, p99 %.2f us, "
        "max %.2f us, mean %.2f us, client CPU %.0f ns/call\n",
        mode_text.c_str(), op.c_str(), block, static_cast<unsigned long long>(iterations),
        percentileUs(samples, 0.0), percentileUs(samples, 0.5), percentileUs(samples, 0.99),
        percentileUs(samples, 1.0), meanUs, cpuPerCall);
  }
  return 0;
}
