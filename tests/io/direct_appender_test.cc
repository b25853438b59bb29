// DirectAppender (io/direct_appender.h): the byte stream it was given, at
// the offset it was given, whatever the mix of sizes, alignments, syncs and
// sources; errors name the file.
#include "care/io/direct_appender.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace care::io {
namespace {

class DirectAppenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/care_direct_appender_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RemoveTree(dir_); }

  // `n` pseudo-random bytes (every value, so a misplaced block shows).
  static std::string Bytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  }

  // Appends `stream` to a fresh file from `start` in pieces of the sizes
  // given (cycled), alternately from memory and from a source file, syncing
  // every `sync_every` pieces; returns the file's bytes.
  std::string WriteStream(const std::string& stream, uint64_t start,
                          const std::vector<size_t>& pieces, int sync_every,
                          bool* direct) {
    const std::string src = dir_ + "/src";
    EXPECT_TRUE(WriteFileSynced(src, stream).ok());
    const int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
    EXPECT_GE(fd, 0);
    const std::string path = dir_ + "/out";
    auto a = DirectAppender::Create(path, start);
    EXPECT_TRUE(a.ok()) << a.status();
    size_t at = 0;
    for (int i = 0; at < stream.size(); ++i) {
      const size_t n = std::min(pieces[i % pieces.size()], stream.size() - at);
      if (i % 2 == 0) {
        EXPECT_TRUE((*a)->Append(stream.data() + at, n).ok());
      } else {
        EXPECT_TRUE((*a)->AppendFrom(FileRange{fd, at, src}, n).ok());
      }
      at += n;
      EXPECT_EQ((*a)->appended(), at);
      if (sync_every > 0 && i % sync_every == sync_every - 1) {
        EXPECT_TRUE((*a)->Sync().ok());
        struct stat st;
        EXPECT_EQ(::stat(path.c_str(), &st), 0);
        EXPECT_EQ(static_cast<uint64_t>(st.st_size), start + at);
      }
    }
    *direct = (*a)->direct();
    EXPECT_TRUE((*a)->Close().ok());
    ::close(fd);
    absl::StatusOr<std::string> out = ReadFileToString(path);
    EXPECT_TRUE(out.ok()) << out.status();
    return out.ok() ? *out : std::string();
  }

  std::string dir_;
};

TEST_F(DirectAppenderTest, WritesTheStreamAtItsOffsetForAnyPieceSizes) {
  // 20 MiB + 123: several 8 MiB buffers and a partial last block.
  const std::string stream = Bytes((size_t{20} << 20) + 123, 1);
  // Aligned (the checkpoint's 1 MiB reserve), unaligned, and none.
  for (uint64_t start : {uint64_t{1} << 20, uint64_t{1000}, uint64_t{0}}) {
    for (const std::vector<size_t>& pieces :
         {std::vector<size_t>{size_t{9} << 20},  // larger than the buffer
          std::vector<size_t>{1, 4095, 4097, 70000, 3 << 20}}) {
      for (int sync_every : {0, 3}) {
        bool direct = false;
        const std::string file =
            WriteStream(stream, start, pieces, sync_every, &direct);
        SCOPED_TRACE(testing::Message()
                     << "start " << start << ", " << pieces.size()
                     << " piece sizes, sync every " << sync_every
                     << (direct ? ", O_DIRECT" : ", buffered"));
        ASSERT_EQ(file.size(), start + stream.size());
        EXPECT_EQ(file.substr(0, start), std::string(start, '\0'));
        EXPECT_TRUE(file.compare(start, stream.size(), stream) == 0);
      }
    }
  }
}

TEST_F(DirectAppenderTest, UsesODirectOnLocalDiskFilesystems) {
  // ext4, xfs and btrfs all support O_DIRECT: there the writes must bypass
  // the page cache (a silent fallback would lose the point of the class).
  struct statfs fs;
  ASSERT_EQ(::statfs(dir_.c_str(), &fs), 0);
  const auto magic = static_cast<uint64_t>(fs.f_type);
  const bool local_disk =
      magic == 0xEF53 || magic == 0x58465342 || magic == 0x9123683E;
  if (!local_disk) GTEST_SKIP() << dir_ << " is not on ext4/xfs/btrfs";
  bool direct = false;
  const std::string stream = Bytes(100000, 2);
  EXPECT_EQ(WriteStream(stream, 4096, {65536}, 0, &direct).substr(4096),
            stream);
  EXPECT_TRUE(direct);
}

TEST_F(DirectAppenderTest, FallsBackToBufferedWritesOnTmpfs) {
  if (!std::filesystem::is_directory("/dev/shm")) {
    GTEST_SKIP() << "no /dev/shm";
  }
  char tmpl[] = "/dev/shm/care_direct_appender_XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string path = dir + "/out";
  auto a = DirectAppender::Create(path, 10);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string stream = Bytes(5000, 3);
  ASSERT_TRUE((*a)->Append(stream.data(), stream.size()).ok());
  ASSERT_TRUE((*a)->Close().ok());
  absl::StatusOr<std::string> out = ReadFileToString(path);
  RemoveTree(dir);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, std::string(10, '\0') + stream);
}

TEST_F(DirectAppenderTest, ASourceThatEndsEarlyIsDataLossNamingIt) {
  const std::string src = dir_ + "/short-source";
  ASSERT_TRUE(WriteFileSynced(src, Bytes(100, 4)).ok());
  const int fd = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto a = DirectAppender::Create(dir_ + "/out", 0);
  ASSERT_TRUE(a.ok());
  absl::Status s = (*a)->AppendFrom(FileRange{fd, 40, src}, 100);
  ::close(fd);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find(src), std::string::npos) << s;
  // The appender stays failed: later calls return the first error.
  EXPECT_EQ((*a)->Append("x", 1).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ((*a)->Close().code(), absl::StatusCode::kDataLoss);
}

TEST_F(DirectAppenderTest, CreateNamesAPathItCannotCreate) {
  const std::string path = dir_ + "/no/such/dir/out";
  auto a = DirectAppender::Create(path, 0);
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find(path), std::string::npos) << a.status();
}

}  // namespace
}  // namespace care::io
