// AtomicWrite / CommitFile (io/file_util.h): the one write-temp, fsync,
// rename, fsync-directory path every writer uses.
#include "care/io/file_util.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "base/annotate.h"

namespace care::io {
namespace {

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/care_file_util_XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { RemoveTree(dir_); }
  int Entries() const {
    int n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      (void)e;
      ++n;
    }
    return n;
  }
  std::string dir_;
};

TEST_F(FileUtilTest, AtomicWriteReplacesTheWholeFileAndLeavesNoTemporary) {
  const std::string path = dir_ + "/ref";
  ASSERT_TRUE(AtomicWrite(path, "first").ok());
  ASSERT_TRUE(AtomicWrite(path, "second, longer").ok());
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "second, longer");
  EXPECT_EQ(Entries(), 1);  // no .tmp.* left beside it
}

TEST_F(FileUtilTest, FailuresNameThePathAndLeaveNothing) {
  const std::string path = dir_ + "/missing/ref";
  absl::Status s = AtomicWrite(path, "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find(dir_ + "/missing/ref"), std::string::npos) << s;
  EXPECT_EQ(Entries(), 0);
  // Annotate keeps the code and prefixes the context.
  absl::Status a = Annotate(s, "writing the ref");
  EXPECT_EQ(a.code(), s.code());
  EXPECT_EQ(a.message(), "writing the ref: " + std::string(s.message()));
  EXPECT_TRUE(Annotate(absl::OkStatus(), "x").ok());
}

TEST_F(FileUtilTest, CommitFileRemovesTheTemporaryWhenTheRenameFails) {
  const std::string tmp = dir_ + "/part";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_TRUE(WriteAll(fd, "abc", 3, tmp).ok());
  // The destination's directory does not exist: rename fails.
  absl::Status s = CommitFile(fd, tmp, dir_ + "/no/such/dir/blob");
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cannot rename into"), std::string::npos) << s;
  EXPECT_FALSE(PathExists(tmp));
}

}  // namespace
}  // namespace care::io
