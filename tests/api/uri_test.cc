#include "base/uri.h"

#include "gtest/gtest.h"

namespace care {
namespace {

TEST(UriTest, LocalPathsAreNormalized) {
  auto a = ParseUri("file:///data//models/./llama/");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, Uri::Kind::kLocal);
  EXPECT_EQ(a->path, "/data/models/llama");
  auto b = ParseUri("/x");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->path, "/x");
  auto root = ParseUri("/");
  ASSERT_TRUE(root.ok());
  EXPECT_EQ(root->path, "/");
}

TEST(UriTest, HubReferences) {
  auto a = ParseUri("hf://meta-llama/Llama-3.1-8B@v1.0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->kind, Uri::Kind::kHuggingFace);
  EXPECT_EQ(a->repo_id, "meta-llama/Llama-3.1-8B");
  EXPECT_EQ(a->revision, "v1.0");
  auto b = ParseUri("hf://gpt2");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->repo_id, "gpt2");
  EXPECT_EQ(b->revision, "main");
}

TEST(UriTest, RejectsWithReason) {
  for (const char* bad :
       {"", "relative/path", "/a/../b", "file://relative", "s3://bucket/key",
        "hf://", "hf://a/b/c", "hf://a/b@", "hf://a/b@../x", "hf://../x",
        "hf://a b/c", "hf://-a/b"}) {
    auto r = ParseUri(bad);
    EXPECT_FALSE(r.ok()) << "accepted: '" << bad << "'";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  EXPECT_FALSE(ParseUri(absl::string_view("/a\0b", 4)).ok());
  EXPECT_FALSE(ParseUri("hf://org/name", /*allow_hub=*/false).ok());
}

}  // namespace
}  // namespace care
