// Exactness against the fixtures' independent references: the real Qwen3
// tokenizer.json on reference.jsonl (ids from transformers.js, checked with
// HF tokenizers), and stories260K's tokenizer.model on the TinyStories text
// (ids in stories260K_reference/).
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "care/tokenizer/hf_tokenizer.h"
#include "care/tokenizer/tokenizer.h"
#include "care/tokenizer/unicode.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "support/fixtures.h"

namespace care::tok {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const Tokenizer& Qwen3() {
  static const Tokenizer* t = [] {
    auto loaded = LoadTokenizer(care::testing::FixturePath("qwen3-tokenizer"));
    EXPECT_TRUE(loaded.ok()) << loaded.status();
    return loaded.ok() ? loaded->release() : nullptr;
  }();
  return *t;
}

TEST(Qwen3TokenizerTest, EveryReferenceLineEncodesAndDecodes) {
  CARE_REQUIRE_FIXTURES();
  const Tokenizer& t = Qwen3();
  ASSERT_NE(&t, nullptr);
  const std::string text =
      ReadAll(care::testing::FixturePath("qwen3-tokenizer/reference.jsonl"));
  // Split on '\n' only: texts contain raw U+0085/U+2028/U+2029 (SOURCE.md).
  size_t lines = 0, nfc_changed = 0, pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    ++lines;
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "line " << lines;
    const std::string input = j["text"].get<std::string>();
    const std::vector<int32_t> want = j["ids"].get<std::vector<int32_t>>();
    auto got = t.Encode(input);
    ASSERT_TRUE(got.ok()) << "line " << lines << ": " << got.status();
    EXPECT_EQ(*got, want) << "line " << lines << ": " << input;
    auto decoded = t.Decode(want);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    if (*decoded != input) {
      // Only texts that NFC changes may differ, and then decode == NFC(text).
      ++nfc_changed;
      EXPECT_EQ(*decoded, *Nfc(input)) << "line " << lines;
    }
  }
  EXPECT_EQ(lines, 320u);
  EXPECT_EQ(nfc_changed, 25u);  // SOURCE.md: 25 lines change under NFC.
}

TEST(Qwen3TokenizerTest, SpecialTokensAndMetadata) {
  CARE_REQUIRE_FIXTURES();
  const Tokenizer& t = Qwen3();
  ASSERT_NE(&t, nullptr);
  // 151,643 BPE tokens + 26 added tokens (151643..151668).
  EXPECT_EQ(t.vocab_size(), 151669);
  EXPECT_EQ(t.bos_id(), std::nullopt);  // tokenizer_config: bos_token null.
  EXPECT_EQ(t.eos_id(), 151645);        // <|im_end|>.
  auto ids = t.Encode("<|im_start|>user\n<think></think>");
  ASSERT_TRUE(ids.ok());
  ASSERT_GE(ids->size(), 3u);
  EXPECT_EQ(ids->front(), 151644);
  EXPECT_EQ(ids->back(), 151668);
}

// Random input: ill-formed bytes are an error, never a crash; well-formed
// text round-trips to its NFC form.
TEST(Qwen3TokenizerTest, RandomInputRoundTrips) {
  CARE_REQUIRE_FIXTURES();
  const Tokenizer& t = Qwen3();
  ASSERT_NE(&t, nullptr);
  std::mt19937_64 rng(7);
  for (int iter = 0; iter < 1000; ++iter) {
    std::string bytes(rng() % 48, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    auto ids = t.Encode(bytes);
    if (!ids.ok()) {
      EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
  const std::vector<char32_t> pool = {
      U'a',          U'Z',      U' ',      U'\n',     U'\r',     U'\t',
      U'7',          U'\'',     U's',      U'!',      U'<',      U'|',
      U'>',          U'\u00e9', U'\u0301', U'\u3000', U'\u4e2d', U'\u0661',
      U'\U0001f600', U'\u200d', U'\u00a0', U'\u0085', U'\ufeff', U'\u017f'};
  for (int iter = 0; iter < 1000; ++iter) {
    std::string text;
    const int len = static_cast<int>(rng() % 32);
    for (int k = 0; k < len; ++k) {
      char32_t cp = (rng() % 5 == 0) ? static_cast<char32_t>(rng() % 0x30000)
                                     : pool[rng() % pool.size()];
      if (cp >= 0xD800 && cp <= 0xDFFF) cp = U'x';
      AppendUtf8(cp, &text);
    }
    auto ids = t.Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    auto back = t.Decode(*ids);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, *Nfc(text));
  }
}

TEST(SentencePieceTest, TinyStoriesMatchesReferenceIds) {
  CARE_REQUIRE_FIXTURES();
  auto t = LoadTokenizer(care::testing::FixturePath("stories260K-hf"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ((*t)->vocab_size(), 512);
  EXPECT_EQ((*t)->bos_id(), 1);
  EXPECT_EQ((*t)->eos_id(), 2);
  const std::string text = ReadAll(
      care::testing::FixturePath("tinystories/tinystories_val_head.txt"));
  const std::string ref = ReadAll(care::testing::FixturePath(
      "stories260K_reference/tinystories_val_head.tok512.u16"));
  ASSERT_EQ(ref.size(), 786024u);
  std::vector<int32_t> want(ref.size() / 2);
  for (size_t i = 0; i < want.size(); ++i) {
    want[i] = static_cast<unsigned char>(ref[2 * i]) |
              (static_cast<unsigned char>(ref[2 * i + 1]) << 8);
  }
  auto got = (*t)->Encode(text);  // The whole file as one string, no BOS.
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), want.size());
  EXPECT_TRUE(*got == want);
  auto head =
      (*t)->Decode(std::vector<int32_t>(want.begin(), want.begin() + 8));
  ASSERT_TRUE(head.ok());
  EXPECT_EQ(*head, text.substr(0, head->size()));
}

TEST(LoadTokenizerTest, ErrorsNameThePath) {
  auto missing = LoadTokenizer("/nonexistent/model");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/model"),
            absl::string_view::npos);
  const std::string empty = care::testing::MakeTempDir("tok_empty");
  auto none = LoadTokenizer(empty);
  EXPECT_NE(none.status().message().find("neither tokenizer.json"),
            absl::string_view::npos);
}

}  // namespace
}  // namespace care::tok
