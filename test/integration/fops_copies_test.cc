// The zero-copy claim, measured: a direct read or write of a large file
// copies 0 bytes in user space, a regular one copies ~100% (stats and the
// CLI's JSON report agree), and the data is still right (SHA-256).
#include <fcntl.h>

#include <cstring>
#include <random>

#include "test/integration/helpers.h"
#include "tools/transfer.h"

namespace zcio::itest {
namespace {

constexpr uint64_t MiB = 1024 * 1024;

class FopsCopies : public ServerFixture {};

tools::TransferOptions transferOptions(fops::IoMode mode) {
  tools::TransferOptions o;
  o.mode = mode;
  o.block = MiB;
  o.queue_depth = 8;
  o.sha256 = true;
  return o;
}

// Fills a block from a deterministic function of its offset.
Result<void> fillBlock(uint64_t offset, std::byte* dst, size_t length) {
  tools::fillPattern(offset, dst, length, 7);
  return okResult();
}

TEST_F(FopsCopies, DirectReadOf256MiBCopiesNothingRegularCopiesEverything) {
  const uint64_t size = 256 * MiB;
  const std::string content = test::writeRandomFile(dir_->file("big"), size, testSeed(0xc0b1e5));
  const std::string sha = sha256Hex(content);
  auto fh = client_->open("big", O_RDONLY);
  ASSERT_TRUE(fh) << fh.error().toString();

  auto direct = tools::readFile(*client_, *fh, size, transferOptions(fops::IoMode::kDirect));
  ASSERT_TRUE(direct) << direct.error().toString();
  EXPECT_EQ(direct->bytes, size);
  EXPECT_EQ(direct->sha256, sha);
  EXPECT_LT(direct->bytes_copied, size / 1000) << "direct read copied in user space";
  EXPECT_EQ(direct->bytes_copied, 0u);
  EXPECT_EQ(direct->requests, size / MiB);

  auto regular = tools::readFile(*client_, *fh, size, transferOptions(fops::IoMode::kRegular));
  ASSERT_TRUE(regular) << regular.error().toString();
  EXPECT_EQ(regular->bytes, size);
  EXPECT_EQ(regular->sha256, sha);
  EXPECT_GE(regular->bytes_copied, size * 99 / 100);
  EXPECT_LE(regular->bytes_copied, size * 101 / 100);
  std::printf("256 MiB read: direct %.0f MB/s copied %llu B; regular %.0f MB/s copied %llu B\n",
              direct->mbPerSecond(), static_cast<unsigned long long>(direct->bytes_copied),
              regular->mbPerSecond(), static_cast<unsigned long long>(regular->bytes_copied));
  ASSERT_TRUE(client_->close(*fh));
  stopServerCleanly();
}

TEST_F(FopsCopies, DirectWriteCopiesNothingRegularCopiesEverything) {
  const uint64_t size = 64 * MiB + 4097;  // a partial last block
  std::string expected_sha;
  for (auto mode : {fops::IoMode::kDirect, fops::IoMode::kRegular}) {
    std::string name = std::string("w-") + (mode == fops::IoMode::kDirect ? "direct" : "regular");
    auto fh = client_->open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ASSERT_TRUE(fh) << fh.error().toString();
    auto report = tools::writeFile(*client_, *fh, size, transferOptions(mode), fillBlock);
    ASSERT_TRUE(report) << report.error().toString();
    EXPECT_EQ(report->bytes, size);
    if (mode == fops::IoMode::kDirect) {
      EXPECT_EQ(report->bytes_copied, 0u) << "direct write copied in user space";
    } else {
      EXPECT_GE(report->bytes_copied, size * 99 / 100);
      EXPECT_LE(report->bytes_copied, size * 101 / 100);
    }
    ASSERT_TRUE(client_->fsync(*fh));
    ASSERT_TRUE(client_->close(*fh));
    // What reached the disk is what was sent.
    std::string disk = test::readLocalFile(dir_->file(name));
    ASSERT_EQ(disk.size(), size);
    EXPECT_EQ(sha256Hex(disk), report->sha256) << name << " on disk differs from what was sent";
    if (expected_sha.empty()) expected_sha = report->sha256;
    EXPECT_EQ(report->sha256, expected_sha);
  }
  stopServerCleanly();
}

// The CLI binary against the real server: its one JSON line reports the
// copies and the SHA-256 of the data.
TEST_F(FopsCopies, CliReportsCopiesAndSha256) {
  const uint64_t size = 24 * MiB + 12345;
  const std::string content = test::writeRandomFile(dir_->file("cli.bin"), size, testSeed(0xc11));
  const std::string sha = sha256Hex(content);
  const std::string url = server_->url() + "/cli.bin";

  for (const char* mode : {"--direct", "--regular"}) {
    SCOPED_TRACE(mode);
    auto run = runCommand({ZCIO_CLI_BINARY, "read", mode, "--sha256", "--json", url},
                          std::chrono::seconds(60));
    ASSERT_EQ(run.exit_status, 0) << run.out;
    std::string line = run.out.substr(0, run.out.find('\n'));
    EXPECT_EQ(jsonField(line, "op"), "read") << line;
    EXPECT_EQ(jsonField(line, "mode"), std::string(mode + 2)) << line;
    ASSERT_EQ(jsonField(line, "bytes"), std::to_string(size)) << line;
    auto copied = jsonField(line, "bytes_copied");
    ASSERT_TRUE(copied) << line;
    EXPECT_EQ(*copied, std::string(mode) == "--direct" ? "0" : std::to_string(size)) << line;
    EXPECT_EQ(jsonField(line, "sha256"), sha) << line;
  }

  // zcio write: the local file goes to the server, direct copies nothing.
  const std::string local = dir_->file("local-src");
  const std::string local_content = test::writeRandomFile(local, 5 * MiB + 3, 0x10ca1);
  for (const char* mode : {"--direct", "--regular"}) {
    SCOPED_TRACE(mode);
    std::string remote = std::string("uploaded") + mode;
    auto run =
        runCommand({ZCIO_CLI_BINARY, "write", mode, "--json", local, server_->url() + "/" + remote},
                   std::chrono::seconds(60));
    ASSERT_EQ(run.exit_status, 0) << run.out;
    std::string line = run.out.substr(0, run.out.find('\n'));
    ASSERT_EQ(jsonField(line, "bytes"), std::to_string(local_content.size())) << line;
    // Over RDMA the 3-byte tail rides inline in the SEND (copied, counted).
    size_t tail = rdmaUnderTest() ? local_content.size() % (1024 * 1024) : 0;
    EXPECT_EQ(jsonField(line, "bytes_copied"), std::string(mode) == "--direct"
                                                   ? std::to_string(tail)
                                                   : std::to_string(local_content.size()))
        << line;
    EXPECT_TRUE(test::readLocalFile(dir_->file(remote)) == local_content)
        << "uploaded file differs from the local source";
  }

  // A missing file: non-zero exit, no JSON claiming success.
  auto missing = runCommand({ZCIO_CLI_BINARY, "read", "--json", server_->url() + "/nope"},
                            std::chrono::seconds(30));
  EXPECT_NE(missing.exit_status, 0);
  EXPECT_EQ(missing.out.find("\"bytes\""), std::string::npos) << missing.out;
  stopServerCleanly();
}

}  // namespace
}  // namespace zcio::itest
