#include "care/tokenizer/decoders.h"

#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "care/tokenizer/byte_level.h"
#include "care/tokenizer/normalizers.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {
namespace {

// All tokens -> bytes -> one string, invalid UTF-8 replaced by U+FFFD.
class ByteLevelDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) ByteLevelDecodeToken(t, &bytes);
    *tokens = {Utf8Lossy(bytes)};
  }
};

// Replacement -> space; in the first token it is dropped when a prefix was
// prepended at encoding (prepend_scheme != never).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Apply(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      const std::string with = (i == 0 && strip_first_) ? "" : " ";
      (*tokens)[i] = absl::StrReplaceAll((*tokens)[i], {{replacement_, with}});
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Apply(std::vector<std::string>* tokens) const override {
    if (pattern_.empty()) return;
    for (std::string& t : *tokens) {
      t = absl::StrReplaceAll(t, {{pattern_, content_}});
    }
  }

 private:
  std::string pattern_, content_;
};

// Runs of <0xXX> tokens become their bytes when those form valid UTF-8,
// otherwise one U+FFFD per byte (HF's ByteFallback).
class ByteFallbackDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    size_t pending_count = 0;
    auto flush = [&] {
      if (pending_count == 0) return;
      if (ValidateUtf8(pending, "").ok()) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending_count; ++i)
          out.push_back("\xEF\xBF\xBD");
      }
      pending.clear();
      pending_count = 0;
    };
    for (std::string& t : *tokens) {
      std::optional<unsigned char> byte;
      if (t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>') {
        int value = 0;
        if (absl::SimpleHexAtoi(absl::string_view(t).substr(3, 2), &value)) {
          byte = static_cast<unsigned char>(value);
        }
      }
      if (byte.has_value()) {
        pending.push_back(static_cast<char>(*byte));
        ++pending_count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    *tokens = {all};
  }
};

// Removes up to `start` leading and `stop` trailing `content` characters
// from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, int64_t start, int64_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void Apply(std::vector<std::string>* tokens) const override {
    std::vector<char32_t> cps;
    for (std::string& t : *tokens) {
      DecodeUtf8(t, &cps, nullptr);
      size_t b = 0, e = cps.size();
      for (int64_t i = 0; i < start_ && b < e && cps[b] == content_; ++i) ++b;
      for (int64_t i = 0; i < stop_ && e > b && cps[e - 1] == content_; ++i) {
        --e;
      }
      std::string s;
      for (size_t i = b; i < e; ++i) AppendUtf8(cps[i], &s);
      t = std::move(s);
    }
  }

 private:
  char32_t content_;
  int64_t start_, stop_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<std::string>* tokens) const override {
    for (const auto& p : parts_) p->Apply(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

absl::StatusOr<int64_t> JsonInt(const nlohmann::json& j, const char* key,
                                const std::string& where) {
  if (!j.contains(key) || !j[key].is_number_integer() ||
      j[key].get<int64_t>() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": field '", key, "' must be a non-negative integer"));
  }
  return j[key].get<int64_t>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(
    const nlohmann::json& j, const std::string& where) {
  CARE_ASSIGN_OR_RETURN(const std::string type, JsonString(j, "type", where));
  const std::string w = absl::StrCat(where, " (", type, ")");
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Metaspace") {
    CARE_ASSIGN_OR_RETURN(std::string rep, JsonString(j, "replacement", w));
    bool strip_first = true;
    if (j.contains("prepend_scheme") && j["prepend_scheme"].is_string()) {
      strip_first = j["prepend_scheme"].get<std::string>() != "never";
    } else {
      CARE_ASSIGN_OR_RETURN(strip_first,
                            JsonBool(j, "add_prefix_space", true, w));
    }
    return std::make_unique<MetaspaceDecoder>(std::move(rep), strip_first);
  }
  if (type == "Replace") {
    if (!j.contains("pattern")) {
      return absl::InvalidArgumentError(w + ": missing 'pattern'");
    }
    CARE_ASSIGN_OR_RETURN(std::string pattern,
                          ParseStringPattern(j["pattern"], w));
    CARE_ASSIGN_OR_RETURN(std::string content, JsonString(j, "content", w));
    return std::make_unique<ReplaceDecoder>(std::move(pattern),
                                            std::move(content));
  }
  if (type == "Strip") {
    CARE_ASSIGN_OR_RETURN(const std::string content,
                          JsonString(j, "content", w));
    std::vector<char32_t> cps;
    DecodeUtf8(content, &cps, nullptr);
    if (cps.size() != 1) {
      return absl::InvalidArgumentError(w +
                                        ": 'content' must be one character");
    }
    CARE_ASSIGN_OR_RETURN(const int64_t start, JsonInt(j, "start", w));
    CARE_ASSIGN_OR_RETURN(const int64_t stop, JsonInt(j, "stop", w));
    return std::make_unique<StripDecoder>(cps[0], start, stop);
  }
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return absl::InvalidArgumentError(w + ": 'decoders' must be an array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < j["decoders"].size(); ++i) {
      CARE_ASSIGN_OR_RETURN(
          auto part, ParseDecoder(j["decoders"][i],
                                  absl::StrCat(where, ".decoders[", i, "]")));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  return absl::UnimplementedError(absl::StrCat(
      where, ": decoder type '", type,
      "' is not supported (supported: ByteLevel, Metaspace, Replace, "
      "ByteFallback, Fuse, Strip, Sequence)"));
}

}  // namespace care::tok
