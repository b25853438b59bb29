// The hand-written split patterns against expectations computed once with
// Python's `regex` module (which implements the same leftmost-first,
// backtracking semantics as Oniguruma) on the exact pattern strings.
#include "care/tokenizer/split_patterns.h"

#include <string>
#include <vector>

#include "care/tokenizer/unicode.h"
#include "gtest/gtest.h"

namespace care::tok {
namespace {

std::vector<std::string> Pieces(const std::string& text, SplitPattern p) {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
  DecodeUtf8(text, &cps, &offsets);
  std::vector<std::string> out;
  for (const auto& [b, e] : SplitIsolated(cps, p)) {
    out.push_back(text.substr(offsets[b], offsets[e] - offsets[b]));
  }
  return out;
}

struct Case {
  SplitPattern pattern;
  std::string text;
  std::vector<std::string> pieces;
};

TEST(SplitPatternsTest, MatchesRegexSemantics) {
  const std::vector<Case> cases = {
      {SplitPattern::kGpt2, "Hello world", {"Hello", " world"}},
      {SplitPattern::kGpt2, "I'm  fine", {"I", "'m", " ", " fine"}},
      {SplitPattern::kGpt2,
       "It'S done, they'LL go",
       {"It", "'", "S", " done", ",", " they", "'", "LL", " go"}},
      {SplitPattern::kGpt2, "12345 apples", {"12345", " apples"}},
      {SplitPattern::kGpt2, "a\n\nb", {"a", "\n", "\n", "b"}},
      {SplitPattern::kGpt2, "  x", {" ", " x"}},
      {SplitPattern::kGpt2, "x   ", {"x", "   "}},
      {SplitPattern::kGpt2, "hi!!\n\n there", {"hi", "!!", "\n\n", " there"}},
      {SplitPattern::kGpt2,
       "tab\there\r\n\r\nnext",
       {"tab", "\t", "here", "\r\n\r", "\n", "next"}},
      {SplitPattern::kGpt2,
       "\u00a0word \u3000x",
       {"\u00a0", "word", " ", "\u3000", "x"}},
      {SplitPattern::kGpt2, "'hello'", {"'", "hello", "'"}},
      {SplitPattern::kGpt2, "$100.50!", {"$", "100", ".", "50", "!"}},
      {SplitPattern::kGpt2, "foo  \n  bar", {"foo", "  \n ", " bar"}},
      {SplitPattern::kGpt2,
       "caf\u00e9 \u0661\u0662\u0663",
       {"caf\u00e9", " \u0661\u0662\u0663"}},
      {SplitPattern::kLlama3, "Hello world", {"Hello", " world"}},
      {SplitPattern::kLlama3, "I'm  fine", {"I", "'m", " ", " fine"}},
      {SplitPattern::kLlama3,
       "It'S done, they'LL go",
       {"It", "'S", " done", ",", " they", "'LL", " go"}},
      {SplitPattern::kLlama3, "12345 apples", {"123", "45", " apples"}},
      {SplitPattern::kLlama3, "a\n\nb", {"a", "\n\n", "b"}},
      {SplitPattern::kLlama3, "  x", {" ", " x"}},
      {SplitPattern::kLlama3, "x   ", {"x", "   "}},
      {SplitPattern::kLlama3, "hi!!\n\n there", {"hi", "!!\n\n", " there"}},
      {SplitPattern::kLlama3,
       "tab\there\r\n\r\nnext",
       {"tab", "\there", "\r\n\r\n", "next"}},
      {SplitPattern::kLlama3,
       "\u00a0word \u3000x",
       {"\u00a0word", " ", "\u3000x"}},
      {SplitPattern::kLlama3, "'hello'", {"'hello", "'"}},
      {SplitPattern::kLlama3, "$100.50!", {"$", "100", ".", "50", "!"}},
      {SplitPattern::kLlama3, "foo  \n  bar", {"foo", "  \n", " ", " bar"}},
      {SplitPattern::kLlama3,
       "caf\u00e9 \u0661\u0662\u0663",
       {"caf\u00e9", " ", "\u0661\u0662\u0663"}},
      {SplitPattern::kQwen2, "Hello world", {"Hello", " world"}},
      {SplitPattern::kQwen2, "I'm  fine", {"I", "'m", " ", " fine"}},
      {SplitPattern::kQwen2,
       "It'S done, they'LL go",
       {"It", "'S", " done", ",", " they", "'LL", " go"}},
      {SplitPattern::kQwen2,
       "12345 apples",
       {"1", "2", "3", "4", "5", " apples"}},
      {SplitPattern::kQwen2, "a\n\nb", {"a", "\n\n", "b"}},
      {SplitPattern::kQwen2, "  x", {" ", " x"}},
      {SplitPattern::kQwen2, "x   ", {"x", "   "}},
      {SplitPattern::kQwen2, "hi!!\n\n there", {"hi", "!!\n\n", " there"}},
      {SplitPattern::kQwen2,
       "tab\there\r\n\r\nnext",
       {"tab", "\there", "\r\n\r\n", "next"}},
      {SplitPattern::kQwen2,
       "\u00a0word \u3000x",
       {"\u00a0word", " ", "\u3000x"}},
      {SplitPattern::kQwen2, "'hello'", {"'hello", "'"}},
      {SplitPattern::kQwen2,
       "$100.50!",
       {"$", "1", "0", "0", ".", "5", "0", "!"}},
      {SplitPattern::kQwen2, "foo  \n  bar", {"foo", "  \n", " ", " bar"}},
      {SplitPattern::kQwen2,
       "caf\u00e9 \u0661\u0662\u0663",
       {"caf\u00e9", " ", "\u0661", "\u0662", "\u0663"}},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(Pieces(c.text, c.pattern), c.pieces)
        << "pattern " << static_cast<int>(c.pattern) << " text '" << c.text
        << "'";
  }
}

TEST(SplitPatternsTest, LongSpaceRunLeavesOneSpaceForTheWord) {
  const std::string text = std::string(1000, ' ') + "word";
  const auto pieces = Pieces(text, SplitPattern::kQwen2);
  ASSERT_EQ(pieces.size(), 2u);
  EXPECT_EQ(pieces[0], std::string(999, ' '));
  EXPECT_EQ(pieces[1], " word");
}

TEST(SplitPatternsTest, RecognizesOnlyExactPatterns) {
  EXPECT_EQ(RecognizeSplitPattern(kQwen2Pattern), SplitPattern::kQwen2);
  EXPECT_EQ(RecognizeSplitPattern(kLlama3Pattern), SplitPattern::kLlama3);
  EXPECT_EQ(RecognizeSplitPattern(kGpt2Pattern), SplitPattern::kGpt2);
  EXPECT_FALSE(RecognizeSplitPattern(std::string(kQwen2Pattern) + "|x"));
  EXPECT_FALSE(RecognizeSplitPattern(""));
}

TEST(UnicodeTest, ClassesFollowUnicodeCategories) {
  EXPECT_TRUE(IsLetter(U'a'));
  EXPECT_TRUE(IsLetter(U'\u00e9'));
  EXPECT_TRUE(IsLetter(U'\u4e2d'));
  EXPECT_FALSE(IsLetter(U'\u0301'));  // Combining mark (Mn) is not \p{L}.
  EXPECT_TRUE(IsNumber(U'\u0661'));   // Arabic-Indic digit (Nd).
  EXPECT_TRUE(IsNumber(U'\u00bd'));   // Vulgar fraction (No).
  EXPECT_TRUE(IsWhitespace(U'\u3000'));
  EXPECT_TRUE(IsWhitespace(U'\u0085'));
  EXPECT_FALSE(IsWhitespace(U'\ufeff'));  // Cf, not White_Space.
  EXPECT_FALSE(IsWhitespace(U'\u200b'));
}

TEST(UnicodeTest, ValidateUtf8ReportsByteOffset) {
  EXPECT_TRUE(ValidateUtf8("h\xc3\xa9llo", "t").ok());
  const absl::Status s = ValidateUtf8("abc\xff", "input");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("byte offset 3"), absl::string_view::npos)
      << s.message();
  EXPECT_FALSE(ValidateUtf8("\xed\xa0\x80", "t").ok());  // Surrogate.
  EXPECT_FALSE(ValidateUtf8("\xc0\xaf", "t").ok());      // Overlong.
  EXPECT_FALSE(ValidateUtf8("\xe2\x82", "t").ok());      // Truncated.
}

TEST(UnicodeTest, NfcComposesAndKeepsNul) {
  auto s = Nfc(std::string("e\xcc\x81\0x", 5));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, std::string("\xc3\xa9\0x", 4));
}

TEST(UnicodeTest, LossyReplacesMaximalSubparts) {
  EXPECT_EQ(Utf8Lossy("a\xe2\x82z\xff"), "a\xef\xbf\xbdz\xef\xbf\xbd");
}

}  // namespace
}  // namespace care::tok
