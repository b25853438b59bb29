#include "care/tokenizer/pre_tokenizers.h"

#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "care/tokenizer/byte_level.h"
#include "care/tokenizer/normalizers.h"
#include "care/tokenizer/split_patterns.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {
namespace {

void SplitPieces(std::vector<std::string>* pieces, SplitPattern pattern) {
  std::vector<std::string> out;
  out.reserve(pieces->size() * 4);
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
  for (const std::string& piece : *pieces) {
    DecodeUtf8(piece, &cps, &offsets);
    for (const auto& [b, e] : SplitIsolated(cps, pattern)) {
      out.emplace_back(piece, offsets[b], offsets[e] - offsets[b]);
    }
  }
  *pieces = std::move(out);
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  explicit SplitPreTokenizer(SplitPattern p) : pattern_(p) {}
  void Apply(std::vector<std::string>* pieces, bool) const override {
    SplitPieces(pieces, pattern_);
  }

 private:
  SplitPattern pattern_;
};

// Optional prefix space, optional GPT-2 split, then bytes -> code points.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex)
      : add_prefix_space_(add_prefix_space), use_regex_(use_regex) {}
  void Apply(std::vector<std::string>* pieces, bool) const override {
    if (add_prefix_space_) {
      for (std::string& p : *pieces) {
        if (p.empty() || p[0] != ' ') p = " " + p;
      }
    }
    if (use_regex_) SplitPieces(pieces, SplitPattern::kGpt2);
    std::string mapped;
    for (std::string& p : *pieces) {
      mapped.clear();
      ByteLevelEncode(p, &mapped);
      p.swap(mapped);
    }
  }

 private:
  bool add_prefix_space_, use_regex_;
};

enum class PrependScheme { kAlways, kFirst, kNever };

// Spaces -> replacement; prepend per scheme unless already there; split so
// that each piece starts with the replacement (MergedWithNext).
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}
  void Apply(std::vector<std::string>* pieces,
             bool at_text_start) const override {
    std::vector<std::string> out;
    for (size_t i = 0; i < pieces->size(); ++i) {
      std::string s = absl::StrReplaceAll((*pieces)[i], {{" ", replacement_}});
      const bool prepend =
          scheme_ == PrependScheme::kAlways ||
          (scheme_ == PrependScheme::kFirst && at_text_start && i == 0);
      if (prepend && !absl::StartsWith(s, replacement_)) {
        s.insert(0, replacement_);
      }
      if (!split_) {
        out.push_back(std::move(s));
        continue;
      }
      size_t start = 0;
      for (size_t pos = s.find(replacement_, 1); pos != std::string::npos;
           pos = s.find(replacement_, pos + replacement_.size())) {
        if (pos > start) out.push_back(s.substr(start, pos - start));
        start = pos;
      }
      if (start < s.size()) out.push_back(s.substr(start));
    }
    *pieces = std::move(out);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(
      std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  void Apply(std::vector<std::string>* pieces,
             bool at_text_start) const override {
    for (const auto& p : parts_) p->Apply(pieces, at_text_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseSplit(
    const nlohmann::json& j, const std::string& where) {
  const std::string w = where + " (Split)";
  if (!j.contains("pattern") || !j["pattern"].is_object()) {
    return absl::InvalidArgumentError(w + ": missing 'pattern' object");
  }
  const nlohmann::json& pat = j["pattern"];
  if (!pat.contains("Regex") || !pat["Regex"].is_string()) {
    return absl::UnimplementedError(
        w + ": only {\"Regex\": ...} patterns are supported");
  }
  const std::string regex = pat["Regex"].get<std::string>();
  const std::optional<SplitPattern> known = RecognizeSplitPattern(regex);
  if (!known.has_value()) {
    return absl::UnimplementedError(
        absl::StrCat(w, ": unknown split pattern '", regex,
                     "' (known: the GPT-2, Llama-3 and Qwen2 patterns)"));
  }
  CARE_ASSIGN_OR_RETURN(const std::string behavior,
                        JsonString(j, "behavior", w));
  if (behavior != "Isolated") {
    return absl::UnimplementedError(absl::StrCat(
        w, ": behavior '", behavior, "' is not supported (only Isolated)"));
  }
  CARE_ASSIGN_OR_RETURN(const bool invert, JsonBool(j, "invert", false, w));
  if (invert) return absl::UnimplementedError(w + ": invert=true unsupported");
  return std::make_unique<SplitPreTokenizer>(*known);
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(
    const nlohmann::json& j, const std::string& where) {
  const std::string w = where + " (Metaspace)";
  CARE_ASSIGN_OR_RETURN(std::string replacement,
                        JsonString(j, "replacement", w));
  PrependScheme scheme = PrependScheme::kAlways;
  if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
    CARE_ASSIGN_OR_RETURN(const std::string s,
                          JsonString(j, "prepend_scheme", w));
    if (s == "always") {
      scheme = PrependScheme::kAlways;
    } else if (s == "first") {
      scheme = PrependScheme::kFirst;
    } else if (s == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          w, ": prepend_scheme '", s, "' is not one of always, first, never"));
    }
  } else {
    // Older files: add_prefix_space (default true) means "always".
    CARE_ASSIGN_OR_RETURN(const bool add,
                          JsonBool(j, "add_prefix_space", true, w));
    scheme = add ? PrependScheme::kAlways : PrependScheme::kNever;
  }
  CARE_ASSIGN_OR_RETURN(const bool split, JsonBool(j, "split", true, w));
  return std::make_unique<MetaspacePreTokenizer>(std::move(replacement), scheme,
                                                 split);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const nlohmann::json& j, const std::string& where) {
  CARE_ASSIGN_OR_RETURN(const std::string type, JsonString(j, "type", where));
  if (type == "Split") return ParseSplit(j, where);
  if (type == "Metaspace") return ParseMetaspace(j, where);
  if (type == "ByteLevel") {
    const std::string w = where + " (ByteLevel)";
    CARE_ASSIGN_OR_RETURN(const bool prefix,
                          JsonBool(j, "add_prefix_space", true, w));
    CARE_ASSIGN_OR_RETURN(const bool regex, JsonBool(j, "use_regex", true, w));
    return std::make_unique<ByteLevelPreTokenizer>(prefix, regex);
  }
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError(
          where + " (Sequence): 'pretokenizers' must be an array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < j["pretokenizers"].size(); ++i) {
      CARE_ASSIGN_OR_RETURN(
          auto part,
          ParsePreTokenizer(j["pretokenizers"][i],
                            absl::StrCat(where, ".pretokenizers[", i, "]")));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  return absl::UnimplementedError(absl::StrCat(
      where, ": pre-tokenizer type '", type,
      "' is not supported (supported: Split, ByteLevel, Metaspace, "
      "Sequence)"));
}

}  // namespace care::tok
