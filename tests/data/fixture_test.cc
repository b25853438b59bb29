// Datasets on the real fixtures: the text path (tokenizer.model on the
// TinyStories text) and the pre-tokenized path (the reference .u16) agree.
#include <vector>

#include "care/data/dataset.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"

namespace care::data {
namespace {

// The text path and the pre-tokenized path agree on the real fixtures.
TEST(DatasetFixtureTest, TinyStoriesTextEqualsReferenceIds) {
  CARE_REQUIRE_FIXTURES();
  auto tok =
      care::tok::LoadTokenizer(care::testing::FixturePath("stories260K-hf"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  auto text = LoadTokenStream(
      care::testing::FixturePath("tinystories/tinystories_val_head.txt"),
      tok->get());
  ASSERT_TRUE(text.ok()) << text.status();
  auto ref = LoadTokenStream(
      care::testing::FixturePath(
          "stories260K_reference/tinystories_val_head.tok512.u16"),
      tok->get());
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->size(), 393012u);
  EXPECT_TRUE(*text == *ref);
}

}  // namespace
}  // namespace care::data
