#include "test_tokenizers.h"

#include "absl/strings/str_format.h"
#include "care/tokenizer/byte_level.h"
#include "care/tokenizer/split_patterns.h"

namespace care::tok::testing {

using nlohmann::json;

json ByteLevelTokenizerJson(
    const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToUnicode()[b]] = b;
  json merge_list = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
    merge_list.push_back(a + " " + b);
  }
  json bl = json::object();
  bl["type"] = "ByteLevel";
  bl["add_prefix_space"] = false;
  bl["trim_offsets"] = false;
  bl["use_regex"] = false;
  json split = json::object();
  split["type"] = "Split";
  split["pattern"]["Regex"] = std::string(kQwen2Pattern);
  split["behavior"] = "Isolated";
  split["invert"] = false;
  json t = json::object();
  t["version"] = "1.0";
  t["normalizer"] = nullptr;
  t["pre_tokenizer"]["type"] = "Sequence";
  t["pre_tokenizer"]["pretokenizers"] = json::array();
  t["pre_tokenizer"]["pretokenizers"].push_back(split);
  t["pre_tokenizer"]["pretokenizers"].push_back(bl);
  t["decoder"] = bl;
  t["added_tokens"] = json::array();
  json& m = t["model"];
  m["type"] = "BPE";
  m["dropout"] = nullptr;
  m["unk_token"] = nullptr;
  m["fuse_unk"] = false;
  m["byte_fallback"] = false;
  m["vocab"] = vocab;
  m["merges"] = merge_list;
  return t;
}

json MetaspaceTokenizerJson(
    const std::vector<std::string>& pieces,
    const std::vector<std::pair<std::string, std::string>>& merges,
    bool legacy) {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) vocab[absl::StrFormat("<0x%02X>", b)] = 3 + b;
  int next = 259;
  for (const std::string& p : pieces) vocab[p] = next++;
  json merge_list = json::array();
  for (const auto& [a, b] : merges) {
    json pair = json::array();
    pair.push_back(a);
    pair.push_back(b);
    merge_list.push_back(pair);
  }
  auto added = [](int id, const char* content) {
    json a = json::object();
    a["id"] = id;
    a["content"] = content;
    a["single_word"] = false;
    a["lstrip"] = false;
    a["rstrip"] = false;
    a["normalized"] = false;
    a["special"] = true;
    return a;
  };
  auto step = [](const char* type) {
    json s = json::object();
    s["type"] = type;
    return s;
  };
  json t = json::object();
  t["version"] = "1.0";
  t["added_tokens"] = json::array();
  t["added_tokens"].push_back(added(0, "<unk>"));
  t["added_tokens"].push_back(added(1, "<s>"));
  t["added_tokens"].push_back(added(2, "</s>"));
  json replace = step("Replace");
  replace["pattern"]["String"] = "\u2581";
  replace["content"] = " ";
  json strip = step("Strip");
  strip["content"] = " ";
  strip["start"] = 1;
  strip["stop"] = 0;
  t["decoder"] = step("Sequence");
  t["decoder"]["decoders"] = json::array();
  for (const json& d : {replace, step("ByteFallback"), step("Fuse"), strip}) {
    t["decoder"]["decoders"].push_back(d);
  }
  json& m = t["model"];
  m["type"] = "BPE";
  m["unk_token"] = "<unk>";
  m["fuse_unk"] = true;
  m["byte_fallback"] = true;
  m["vocab"] = vocab;
  m["merges"] = merge_list;
  if (legacy) {
    json prepend = step("Prepend");
    prepend["prepend"] = "\u2581";
    json space = step("Replace");
    space["pattern"]["String"] = " ";
    space["content"] = "\u2581";
    t["normalizer"] = step("Sequence");
    t["normalizer"]["normalizers"] = json::array();
    t["normalizer"]["normalizers"].push_back(prepend);
    t["normalizer"]["normalizers"].push_back(space);
    t["pre_tokenizer"] = nullptr;
  } else {
    t["normalizer"] = nullptr;
    json meta = step("Metaspace");
    meta["replacement"] = "\u2581";
    meta["prepend_scheme"] = "first";
    meta["split"] = false;
    t["pre_tokenizer"] = meta;
  }
  return t;
}

}  // namespace care::tok::testing
