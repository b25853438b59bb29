// tokenizer.json components on small hand-built tokenizers: byte-level BPE,
// Metaspace + byte_fallback (both tokenizer.json forms of SentencePiece-style
// models), added tokens, errors, and robustness on random input.
#include "care/tokenizer/hf_tokenizer.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "care/tokenizer/byte_level.h"
#include "care/tokenizer/unicode.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "test_tokenizers.h"

namespace care::tok {
namespace {

using nlohmann::json;
using testing::ByteLevelTokenizerJson;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::MetaspaceTokenizerJson;

std::unique_ptr<HfTokenizer> Make(const json& j) {
  auto t = HfTokenizer::FromJson(j.dump(), "", "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

absl::Status MakeError(const json& j) {
  return HfTokenizer::FromJson(j.dump(), "", "test.json").status();
}

std::vector<int32_t> Enc(const Tokenizer& t, const std::string& s) {
  auto ids = t.Encode(s);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

// "Ġ" is the byte-level symbol of the space byte.
const std::string kG = "\xc4\xa0";

TEST(ByteLevelBpeTest, MergesByRankAndSplitsWords) {
  // Merged tokens get ids 256, 257, ... in this order.
  auto t = Make(ByteLevelTokenizerJson({{"h", "e"},     // 256 he
                                        {"l", "l"},     // 257 ll
                                        {"he", "ll"},   // 258 hell
                                        {"hell", "o"},  // 259 hello
                                        {kG, "w"},      // 260 Ġw
                                        {"o", "r"}}));  // 261 or
  ASSERT_NE(t, nullptr);
  // "hello" -> one token; " world" -> Ġw, or, l, d (Ġw has the lower rank
  // but both merges apply: Ġw + o r + l + d).
  EXPECT_THAT(Enc(*t, "hello world"), ElementsAre(259, 260, 261, 'l', 'd'));
  EXPECT_EQ(*t->Decode({259, 260, 261, 'l', 'd'}), "hello world");
  EXPECT_EQ(t->vocab_size(), 262);
}

TEST(ByteLevelBpeTest, TiesMergeLeftmostFirst) {
  auto t = Make(ByteLevelTokenizerJson({{"a", "a"}, {"aa", "a"}}));
  ASSERT_NE(t, nullptr);
  // aaa: (a a) at 0 first -> aa a -> aaa.
  EXPECT_THAT(Enc(*t, "aaa"), ElementsAre(257));
  // aaaa: aa aa (no "aa aa" merge).
  EXPECT_THAT(Enc(*t, "aaaa"), ElementsAre(256, 256));
  // aaaaa: aa aa a -> the "aa a" merge takes the rightmost pair.
  EXPECT_THAT(Enc(*t, "aaaaa"), ElementsAre(256, 257));
}

TEST(ByteLevelBpeTest, NonAsciiBytesUseTheByteTable) {
  auto t = Make(ByteLevelTokenizerJson({}));
  ASSERT_NE(t, nullptr);
  // U+00E9 is bytes C3 A9; ids are the byte values.
  EXPECT_THAT(Enc(*t, "\xc3\xa9"), ElementsAre(0xC3, 0xA9));
  EXPECT_THAT(Enc(*t, " \n"), ElementsAre(' ', '\n'));
  EXPECT_EQ(*t->Decode({0xC3, 0xA9}), "\xc3\xa9");
  // A lone continuation byte decodes to U+FFFD, like HF's lossy decode.
  EXPECT_EQ(*t->Decode({0xA9}), "\xef\xbf\xbd");
}

TEST(ByteLevelBpeTest, ArrayMergesEqualStringMerges) {
  json j = ByteLevelTokenizerJson({{"h", "e"}, {"l", "l"}});
  json arrays = json::array({json::array({"h", "e"}), json::array({"l", "l"})});
  j["model"]["merges"] = arrays;
  auto t = Make(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Enc(*t, "hell"), ElementsAre(256, 257));
}

TEST(ByteLevelBpeTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  json j = ByteLevelTokenizerJson({{"a", "b"}, {"ab", "c"}});  // 256, 257
  j["model"]["merges"] = json::array({"a b"});  // "abc" stays in the vocab.
  auto plain = Make(j);
  ASSERT_NE(plain, nullptr);
  EXPECT_THAT(Enc(*plain, "abc"), ElementsAre(256, 'c'));
  j["model"]["ignore_merges"] = true;
  auto ignoring = Make(j);
  ASSERT_NE(ignoring, nullptr);
  EXPECT_THAT(Enc(*ignoring, "abc"), ElementsAre(257));
  EXPECT_THAT(Enc(*ignoring, "abcd"), ElementsAre(256, 'c', 'd'));
}

TEST(ByteLevelBpeTest, Gpt2StyleByteLevelWithRegexAndPrefixSpace) {
  json j = ByteLevelTokenizerJson({{"i", kG}});  // Would merge across words.
  j["pre_tokenizer"] = {
      {"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  auto t = Make(j);
  ASSERT_NE(t, nullptr);
  // " hi" and " you" are separate words, so "iĠ" never forms; the space
  // byte's symbol Ġ has id 32.
  EXPECT_THAT(Enc(*t, "hi you"),
              ElementsAre(' ', 'h', 'i', ' ', 'y', 'o', 'u'));
}

TEST(AddedTokensTest, MatchedBeforeBpeLongestFirst) {
  json j = ByteLevelTokenizerJson({});
  j["added_tokens"] = json::array({{{"id", 300},
                                    {"content", "<|a|>"},
                                    {"special", true},
                                    {"normalized", false}},
                                   {{"id", 301},
                                    {"content", "<|a|>x"},
                                    {"special", false},
                                    {"normalized", false}},
                                   {{"id", 302},
                                    {"content", "<r>"},
                                    {"special", true},
                                    {"normalized", false},
                                    {"rstrip", true}},
                                   {{"id", 303},
                                    {"content", "<l>"},
                                    {"special", true},
                                    {"normalized", false},
                                    {"lstrip", true}}});
  auto t = Make(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Enc(*t, "q<|a|>"), ElementsAre('q', 300));
  EXPECT_THAT(Enc(*t, "<|a|>xy"), ElementsAre(301, 'y'));
  EXPECT_THAT(Enc(*t, "<|a|"), ElementsAre('<', '|', 'a', '|'));
  // rstrip absorbs the following spaces; lstrip the preceding ones.
  EXPECT_THAT(Enc(*t, "<r>  b"), ElementsAre(302, 'b'));
  EXPECT_THAT(Enc(*t, "b  <l>"), ElementsAre('b', 303));
  EXPECT_EQ(*t->Decode({'q', 300, 301}), "q<|a|><|a|>x");
  EXPECT_EQ(t->vocab_size(), 304);
}

TEST(MetaspaceTest, PrependFirstAndByteFallback) {
  const std::vector<std::string> pieces = {
      "\u2581",  "h",        "e",  "l",          "o",
      "\u2581h", "\u2581he", "ll", "\u2581hell", "\u2581hello"};
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\u2581", "h"},
      {"\u2581h", "e"},
      {"l", "l"},
      {"\u2581he", "ll"},
      {"\u2581hell", "o"}};
  // Ids: ▁=259 h=260 e=261 l=262 o=263 ▁h=264 ▁he=265 ll=266 ▁hell=267
  // ▁hello=268; <0xXX> = 3 + XX.
  for (bool legacy : {false, true}) {
    SCOPED_TRACE(legacy ? "legacy normalizer form" : "Metaspace form");
    auto t = Make(MetaspaceTokenizerJson(pieces, merges, legacy));
    ASSERT_NE(t, nullptr);
    EXPECT_THAT(Enc(*t, "hello"), ElementsAre(268));
    // é (C3 A9) is not in the vocabulary: byte fallback.
    EXPECT_THAT(Enc(*t, "hello \xc3\xa9"),
                ElementsAre(268, 259, 3 + 0xC3, 3 + 0xA9));
    EXPECT_EQ(*t->Decode({268, 259, 3 + 0xC3, 3 + 0xA9}), "hello \xc3\xa9");
    // An invalid byte run decodes to one U+FFFD per byte.
    EXPECT_EQ(*t->Decode({268, 3 + 0xC3}), "hello\xef\xbf\xbd");
    EXPECT_EQ(t->bos_id(), std::nullopt);  // No tokenizer_config.json.
  }
}

TEST(MetaspaceTest, SpecialTokenAndPrependScheme) {
  const std::vector<std::string> pieces = {"\u2581",  "h",        "i",
                                           "\u2581h", "\u2581hi", "hi"};
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\u2581", "h"}, {"\u2581h", "i"}, {"h", "i"}};
  // ▁=259 h=260 i=261 ▁h=262 ▁hi=263 hi=264.
  // Metaspace "first": no ▁ after a leading special token.
  auto first = Make(MetaspaceTokenizerJson(pieces, merges, false));
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(Enc(*first, "<s>hi"), ElementsAre(1, 264));
  EXPECT_THAT(Enc(*first, "hi hi"), ElementsAre(263, 263));
  // Legacy Prepend normalizer: every non-empty segment gets ▁.
  auto legacy = Make(MetaspaceTokenizerJson(pieces, merges, true));
  ASSERT_NE(legacy, nullptr);
  EXPECT_THAT(Enc(*legacy, "<s>hi"), ElementsAre(1, 263));
  // Unknown character without a byte token: fused <unk>.
  json j = MetaspaceTokenizerJson(pieces, merges, true);
  j["model"]["byte_fallback"] = false;
  auto unk = Make(j);
  ASSERT_NE(unk, nullptr);
  EXPECT_THAT(Enc(*unk, "hi\xc3\xa9\xc3\xa9"), ElementsAre(263, 0));
}

TEST(MetaspaceTest, SplitAlwaysAndMetaspaceDecoder) {
  const std::vector<std::string> pieces = {"\u2581", "h", "i", "\u2581h",
                                           "\u2581hi"};
  // ▁=259 h=260 i=261 ▁h=262 ▁hi=263.
  json j = MetaspaceTokenizerJson(pieces, {{"\u2581", "h"}, {"\u2581h", "i"}},
                                  false);
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  j["pre_tokenizer"]["split"] = true;
  j["decoder"] = {{"type", "Metaspace"},
                  {"replacement", "\u2581"},
                  {"prepend_scheme", "always"},
                  {"split", true}};
  auto t = Make(j);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Enc(*t, "hi  hi"), ElementsAre(263, 259, 263));
  // "always" also prepends after a special token.
  EXPECT_THAT(Enc(*t, "</s>hi"), ElementsAre(2, 263));
  EXPECT_EQ(*t->Decode({263, 259, 263}), "hi  hi");
}

TEST(ConfigTest, BosEosFromTokenizerConfig) {
  const json j = MetaspaceTokenizerJson({}, {}, false);
  auto t = HfTokenizer::FromJson(
      j.dump(), R"({"bos_token": "<s>", "eos_token": {"content": "</s>"}})",
      "t");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_EQ((*t)->eos_id(), 2);
}

TEST(ErrorsTest, UnknownComponentsAreNamed) {
  json j = ByteLevelTokenizerJson({});
  j["normalizer"] = {{"type", "Lowercase"}};
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("'Lowercase'"));

  j = ByteLevelTokenizerJson({});
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("'\\w+'"));

  j = ByteLevelTokenizerJson({});
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("'Whitespace'"));

  j = ByteLevelTokenizerJson({});
  j["decoder"] = {{"type", "WordPiece"}};
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("'WordPiece'"));

  j = ByteLevelTokenizerJson({});
  j["model"]["type"] = "Unigram";
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("'Unigram'"));

  j = ByteLevelTokenizerJson({});
  j["model"]["merges"] = json::array({"a b c"});
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("merges[0]"));

  j = ByteLevelTokenizerJson({});
  j["model"]["merges"] = json::array({"a zz"});
  EXPECT_THAT(std::string(MakeError(j).message()), HasSubstr("merges[0]"));

  EXPECT_FALSE(HfTokenizer::FromJson("{not json", "", "t").ok());
}

TEST(ErrorsTest, BadInputAndIds) {
  auto t = Make(ByteLevelTokenizerJson({}));
  ASSERT_NE(t, nullptr);
  auto bad = t->Encode("ok\xc3(");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("byte offset 2"));
  auto dec = t->Decode({1, 999});
  ASSERT_FALSE(dec.ok());
  EXPECT_THAT(std::string(dec.status().message()), HasSubstr("ids[1] = 999"));
  EXPECT_FALSE(t->Decode({-1}).ok());
}

// Random bytes must never crash (ill-formed input is an error), and random
// well-formed text round-trips exactly through a byte-level tokenizer with
// no normalizer.
TEST(RobustnessTest, RandomInput) {
  auto t = Make(ByteLevelTokenizerJson(
      {{"a", "b"}, {kG, "a"}, {"ab", "ab"}, {"\xc3\x83", "\xc2\xa9"}}));
  ASSERT_NE(t, nullptr);
  std::mt19937_64 rng(12345);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string bytes(rng() % 64, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    auto ids = t->Encode(bytes);
    if (ids.ok()) {
      EXPECT_EQ(*t->Decode(*ids), bytes);
    } else {
      EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  const std::vector<char32_t> pool = {
      U'a',      U'b',      U' ',      U'\n',         U'\t', U'1',
      U'\u00e9', U'\u3000', U'\u4e2d', U'\U0001f600', U'\'', U's',
      U'!',      U'\u0301', U'\u00a0', U'\r'};
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text;
    const int len = static_cast<int>(rng() % 40);
    for (int k = 0; k < len; ++k) {
      char32_t cp = (rng() % 4 == 0) ? static_cast<char32_t>(rng() % 0x2FFFF)
                                     : pool[rng() % pool.size()];
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = U'x';
      std::string enc;
      AppendUtf8(cp, &enc);
      text += enc;
    }
    auto ids = t->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    EXPECT_EQ(*t->Decode(*ids), text);
  }
}

}  // namespace
}  // namespace care::tok
