#include "care/tokenizer/hf_tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {
namespace {

using nlohmann::json;

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseMerges(
    const json& merges, const std::string& where) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      // "a b": exactly one space, as HF requires.
      std::vector<std::string> parts =
          absl::StrSplit(m.get_ref<const std::string&>(), ' ');
      if (parts.size() != 2) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ".merges[", i, "]: expected \"a b\" with one space"));
      }
      out.emplace_back(std::move(parts[0]), std::move(parts[1]));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
               m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".merges[", i, "]: expected \"a b\" or [\"a\", \"b\"]"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<BpeModel>> ParseBpe(const json& model,
                                                   const std::string& where) {
  if (!model.is_object()) {
    return absl::InvalidArgumentError(where + ": 'model' must be an object");
  }
  std::string type = "BPE";
  if (model.contains("type")) {
    CARE_ASSIGN_OR_RETURN(type, JsonString(model, "type", where));
  }
  if (type != "BPE") {
    return absl::UnimplementedError(absl::StrCat(
        where, ": model type '", type, "' is not supported (only BPE)"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return absl::InvalidArgumentError(where + ": 'vocab' must be an object");
  }
  if (!model.contains("merges") || !model["merges"].is_array()) {
    return absl::InvalidArgumentError(where + ": 'merges' must be an array");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(key) && !model[key].is_null() &&
        !(model[key].is_string() && model[key].get<std::string>().empty())) {
      return absl::UnimplementedError(
          absl::StrCat(where, ": non-empty '", key, "' is not supported"));
    }
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      !(model["dropout"].is_number() && model["dropout"].get<double>() == 0)) {
    return absl::UnimplementedError(
        where + ": BPE dropout is not supported (must be null or 0)");
  }
  absl::flat_hash_map<std::string, int32_t> vocab;
  vocab.reserve(model["vocab"].size());
  for (const auto& [token, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ".vocab['", token, "']: id must be in [0, 2^31)"));
    }
    vocab.emplace(token, static_cast<int32_t>(id.get<int64_t>()));
  }
  CARE_ASSIGN_OR_RETURN(auto merges, ParseMerges(model["merges"], where));
  BpeOptions options;
  if (model.contains("unk_token") && !model["unk_token"].is_null()) {
    CARE_ASSIGN_OR_RETURN(options.unk_token,
                          JsonString(model, "unk_token", where));
  }
  CARE_ASSIGN_OR_RETURN(options.fuse_unk,
                        JsonBool(model, "fuse_unk", false, where));
  CARE_ASSIGN_OR_RETURN(options.byte_fallback,
                        JsonBool(model, "byte_fallback", false, where));
  CARE_ASSIGN_OR_RETURN(options.ignore_merges,
                        JsonBool(model, "ignore_merges", false, where));
  return BpeModel::Create(std::move(vocab), merges, std::move(options));
}

absl::StatusOr<std::vector<AddedToken>> ParseAddedTokens(
    const json& j, const std::string& where) {
  std::vector<AddedToken> out;
  if (j.is_null()) return out;
  if (!j.is_array()) {
    return absl::InvalidArgumentError(where + ": must be an array");
  }
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string w = absl::StrCat(where, "[", i, "]");
    const json& t = j[i];
    AddedToken a;
    if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
        t["id"].get<int64_t>() < 0 || t["id"].get<int64_t>() > INT32_MAX) {
      return absl::InvalidArgumentError(w + ": 'id' must be in [0, 2^31)");
    }
    a.id = static_cast<int32_t>(t["id"].get<int64_t>());
    CARE_ASSIGN_OR_RETURN(a.content, JsonString(t, "content", w));
    CARE_ASSIGN_OR_RETURN(a.single_word, JsonBool(t, "single_word", false, w));
    CARE_ASSIGN_OR_RETURN(a.lstrip, JsonBool(t, "lstrip", false, w));
    CARE_ASSIGN_OR_RETURN(a.rstrip, JsonBool(t, "rstrip", false, w));
    CARE_ASSIGN_OR_RETURN(a.special, JsonBool(t, "special", false, w));
    // HF's default: special tokens are not normalized, others are.
    CARE_ASSIGN_OR_RETURN(a.normalized,
                          JsonBool(t, "normalized", !a.special, w));
    CARE_RETURN_IF_ERROR(ValidateUtf8(a.content, w + ".content"));
    out.push_back(std::move(a));
  }
  return out;
}

// bos_token / eos_token of tokenizer_config.json: a string or {"content"}.
std::optional<std::string> ConfigToken(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& v = config[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    return v["content"].get<std::string>();
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(
    absl::string_view json_text, absl::string_view config_text,
    const std::string& name) {
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": not a valid JSON object"));
  }
  std::unique_ptr<HfTokenizer> t(new HfTokenizer());
  t->name_ = name;
  if (!j.contains("model")) {
    return absl::InvalidArgumentError(name + ": missing 'model'");
  }
  CARE_ASSIGN_OR_RETURN(t->model_, ParseBpe(j["model"], name + " model"));
  if (j.contains("normalizer") && !j["normalizer"].is_null()) {
    CARE_ASSIGN_OR_RETURN(
        t->normalizer_, ParseNormalizer(j["normalizer"], name + " normalizer"));
  }
  if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
    CARE_ASSIGN_OR_RETURN(
        t->pre_tokenizer_,
        ParsePreTokenizer(j["pre_tokenizer"], name + " pre_tokenizer"));
  }
  if (j.contains("decoder") && !j["decoder"].is_null()) {
    CARE_ASSIGN_OR_RETURN(t->decoder_,
                          ParseDecoder(j["decoder"], name + " decoder"));
  }
  std::vector<AddedToken> added;
  if (j.contains("added_tokens")) {
    CARE_ASSIGN_OR_RETURN(
        added, ParseAddedTokens(j["added_tokens"], name + " added_tokens"));
  }
  t->vocab_size_ = t->model_->size();
  std::vector<AddedToken> raw, norm;
  std::vector<std::string> raw_contents, norm_contents;
  for (const AddedToken& a : added) {
    t->vocab_size_ = std::max<int64_t>(t->vocab_size_, int64_t{a.id} + 1);
    t->added_content_[a.id] = a.content;
    if (a.normalized && t->normalizer_ != nullptr) {
      // HF matches normalized tokens by their normalized content.
      std::string content = a.content;
      CARE_RETURN_IF_ERROR(t->normalizer_->Apply(&content));
      norm.push_back(a);
      norm_contents.push_back(std::move(content));
    } else {
      raw.push_back(a);
      raw_contents.push_back(a.content);
    }
  }
  t->raw_matcher_ = AddedTokenMatcher(std::move(raw), std::move(raw_contents));
  t->normalized_matcher_ =
      AddedTokenMatcher(std::move(norm), std::move(norm_contents));
  if (!config_text.empty()) {
    const json config = json::parse(config_text.begin(), config_text.end(),
                                    nullptr, /*allow_exceptions=*/false);
    if (config.is_discarded()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": tokenizer_config.json is not valid JSON"));
    }
    if (auto bos = ConfigToken(config, "bos_token")) {
      t->bos_id_ = t->TokenToId(*bos);
    }
    if (auto eos = ConfigToken(config, "eos_token")) {
      t->eos_id_ = t->TokenToId(*eos);
    }
  }
  return t;
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromFile(
    const std::string& path) {
  CARE_ASSIGN_OR_RETURN(const std::string text, ReadFileToString(path));
  std::string config;
  const std::filesystem::path config_path =
      std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (std::filesystem::exists(config_path, ec)) {
    CARE_ASSIGN_OR_RETURN(config, ReadFileToString(config_path.string()));
  }
  return FromJson(text, config, path);
}

std::optional<int32_t> HfTokenizer::TokenToId(absl::string_view token) const {
  for (const auto& [id, content] : added_content_) {
    if (content == token) return id;
  }
  return model_->TokenToId(token);
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(
    absl::string_view text) const {
  CARE_RETURN_IF_ERROR(ValidateUtf8(text, name_ + ": Encode text"));
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  if (raw_matcher_.empty()) {
    CARE_RETURN_IF_ERROR(EncodeText(text, /*at_text_start=*/true, &ids));
    return ids;
  }
  for (const Segment& s : raw_matcher_.Split(text)) {
    if (s.token_id >= 0) {
      ids.push_back(s.token_id);
    } else {
      CARE_RETURN_IF_ERROR(EncodeText(s.text, s.offset == 0, &ids));
    }
  }
  return ids;
}

absl::Status HfTokenizer::EncodeText(absl::string_view text, bool at_text_start,
                                     std::vector<int32_t>* ids) const {
  std::string normalized(text);
  if (normalizer_ != nullptr) {
    CARE_RETURN_IF_ERROR(normalizer_->Apply(&normalized));
  }
  auto encode_pieces = [&](absl::string_view s, bool at_start) {
    std::vector<std::string> pieces = {std::string(s)};
    if (pre_tokenizer_ != nullptr) pre_tokenizer_->Apply(&pieces, at_start);
    for (const std::string& p : pieces) model_->Tokenize(p, ids);
  };
  if (normalized_matcher_.empty()) {
    if (!normalized.empty()) encode_pieces(normalized, at_text_start);
    return absl::OkStatus();
  }
  for (const Segment& s : normalized_matcher_.Split(normalized)) {
    if (s.token_id >= 0) {
      ids->push_back(s.token_id);
    } else {
      encode_pieces(s.text, at_text_start && s.offset == 0);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> HfTokenizer::Decode(
    const std::vector<int32_t>& ids) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const int32_t id = ids[i];
    if (auto it = added_content_.find(id); it != added_content_.end()) {
      tokens.push_back(it->second);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(name_, ": Decode: ids[", i, "] = ", id,
                       " is not a token (vocabulary [0, ", vocab_size_, "))"));
    }
    tokens.push_back(*token);
  }
  // Without a decoder HF joins the tokens with spaces.
  if (decoder_ == nullptr) return absl::StrJoin(tokens, " ");
  decoder_->Apply(&tokens);
  return absl::StrJoin(tokens, "");
}

}  // namespace care::tok
