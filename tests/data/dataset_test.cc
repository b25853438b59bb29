// Dataset readers: .txt, .jsonl (field, separator, line-numbered errors),
// .u16/.u32 token files, invalid UTF-8 and empty data.
#include "care/data/dataset.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "care/tokenizer/hf_tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/fixtures.h"
#include "test_tokenizers.h"

namespace care::data {
namespace {

using ::testing::HasSubstr;

class DatasetTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = care::testing::MakeTempDir("care_data"); }
  void TearDown() override {
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  std::string Write(const std::string& name, const std::string& bytes) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }
  std::string dir_;
};

std::string Message(const absl::Status& s) { return std::string(s.message()); }

TEST_F(DatasetTest, TxtIsTheWholeFile) {
  auto t = LoadText(Write("a.txt", "one\n\ntwo\n"));
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "one\n\ntwo\n");
}

TEST_F(DatasetTest, JsonlJoinsTheFieldWithTheSeparator) {
  const std::string path =
      Write("d.jsonl",
            "{\"text\": \"alpha\", \"id\": 1}\n\n{\"text\": \"b\\u00e9ta\"}\n"
            "{\"body\": \"x\", \"text\": \"gamma\"}\n");
  auto t = LoadText(path);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(*t, "alpha\n\nb\xc3\xa9ta\n\ngamma");
  TextOptions opt;
  opt.text_field = "body";
  opt.separator = "|";
  auto missing = LoadText(path, opt);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(Message(missing.status()), HasSubstr("d.jsonl:1"));
  EXPECT_THAT(Message(missing.status()), HasSubstr("'body'"));
  auto bad = LoadText(Write("bad.jsonl", "{\"text\": \"a\"}\n[1, 2]\n"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("bad.jsonl:2"));
  auto notstr = LoadText(Write("n.jsonl", "{\"text\": 3}\n"));
  EXPECT_THAT(Message(notstr.status()), HasSubstr("n.jsonl:1"));
}

TEST_F(DatasetTest, InvalidUtf8AndEmptyData) {
  auto bad = LoadText(Write("bad.txt", "abc\xc3"));
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(Message(bad.status()), HasSubstr("byte offset 3"));
  auto bad_jsonl = LoadText(Write("bad2.jsonl", "{\"text\": \"ab\xff\"}\n"));
  EXPECT_THAT(Message(bad_jsonl.status()), HasSubstr("byte offset 12"));
  EXPECT_THAT(Message(LoadText(Write("e.txt", "")).status()),
              HasSubstr("empty data"));
  EXPECT_THAT(Message(LoadText(Write("e.jsonl", "\n  \n")).status()),
              HasSubstr("empty data"));
  EXPECT_THAT(Message(LoadText(dir_ + "/missing.txt").status()),
              HasSubstr("missing.txt"));
  EXPECT_THAT(Message(LoadText(Write("x.csv", "a")).status()),
              HasSubstr("unknown text format"));
}

TEST_F(DatasetTest, TokenFilesAreLittleEndian) {
  auto u16 = ReadTokenFile(Write("t.u16", std::string("\x01\x02\xff\xff", 4)));
  ASSERT_TRUE(u16.ok()) << u16.status();
  EXPECT_EQ(*u16, (std::vector<int32_t>{0x0201, 0xFFFF}));
  auto u32 = ReadTokenFile(
      Write("t.u32", std::string("\x01\x02\x03\x00\x05\x00\x00\x00", 8)));
  ASSERT_TRUE(u32.ok()) << u32.status();
  EXPECT_EQ(*u32, (std::vector<int32_t>{0x030201, 5}));
  EXPECT_THAT(Message(ReadTokenFile(Write("odd.u16", "abc")).status()),
              HasSubstr("not a multiple"));
  EXPECT_THAT(Message(ReadTokenFile(Write("z.u32", "")).status()),
              HasSubstr("empty data"));
  EXPECT_THAT(
      Message(ReadTokenFile(Write("big.u32", "\xff\xff\xff\xff")).status()),
      HasSubstr("exceeds"));
}

TEST_F(DatasetTest, LoadTokenStreamDispatches) {
  auto tok = care::tok::HfTokenizer::FromJson(
      care::tok::testing::ByteLevelTokenizerJson({}).dump(), "", "bl");
  ASSERT_TRUE(tok.ok()) << tok.status();
  // Byte-level with no merges: ids are the bytes.
  auto txt = LoadTokenStream(Write("s.txt", "Hi!"), tok->get());
  ASSERT_TRUE(txt.ok()) << txt.status();
  EXPECT_EQ(*txt, (std::vector<int32_t>{'H', 'i', '!'}));
  TextOptions opt;
  opt.separator = "#";
  auto jsonl =
      LoadTokenStream(Write("s.jsonl", "{\"text\":\"a\"}\n{\"text\":\"b\"}\n"),
                      tok->get(), opt);
  ASSERT_TRUE(jsonl.ok()) << jsonl.status();
  EXPECT_EQ(*jsonl, (std::vector<int32_t>{'a', '#', 'b'}));
  const std::string ids = Write("s.u16", std::string("\x05\x00\x2c\x01", 4));
  auto raw = LoadTokenStream(ids, nullptr);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, (std::vector<int32_t>{5, 300}));
  // 300 is outside the 256-token vocabulary.
  auto checked = LoadTokenStream(ids, tok->get());
  ASSERT_FALSE(checked.ok());
  EXPECT_THAT(Message(checked.status()), HasSubstr("index 1"));
  EXPECT_THAT(Message(LoadTokenStream(Write("n.txt", "x"), nullptr).status()),
              HasSubstr("tokenizer is required"));
}

// A job's calibration/evaluation.text_field: LoadTokenStream reads that
// field of every line, and a line without it fails naming file, line and
// field.
TEST_F(DatasetTest, TokenStreamReadsTheChosenJsonlField) {
  auto tok = care::tok::HfTokenizer::FromJson(
      care::tok::testing::ByteLevelTokenizerJson({}).dump(), "", "bl");
  ASSERT_TRUE(tok.ok()) << tok.status();
  TextOptions opt;
  opt.text_field = "story";
  opt.separator = "/";
  const std::string path = Write("f.jsonl",
                                 "{\"text\": \"no\", \"story\": \"ab\"}\n"
                                 "{\"story\": \"c\", \"text\": 1}\n");
  auto ids = LoadTokenStream(path, tok->get(), opt);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(*ids, (std::vector<int32_t>{'a', 'b', '/', 'c'}));
  // The default field is a number on line 2.
  auto fallback = LoadTokenStream(path, tok->get());
  ASSERT_FALSE(fallback.ok());
  EXPECT_EQ(fallback.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(fallback.status()),
              HasSubstr(path + ":2: missing string field 'text'"));
  opt.text_field = "summary";
  EXPECT_THAT(Message(LoadTokenStream(path, tok->get(), opt).status()),
              HasSubstr(path + ":1: missing string field 'summary'"));
}

}  // namespace
}  // namespace care::data
