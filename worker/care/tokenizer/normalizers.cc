#include "care/tokenizer/normalizers.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "base/status_macros.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {

absl::StatusOr<std::string> JsonString(const nlohmann::json& j, const char* key,
                                       const std::string& where) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be a string"));
  }
  return j[key].get<std::string>();
}

absl::StatusOr<bool> JsonBool(const nlohmann::json& j, const char* key,
                              bool fallback, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": field '", key, "' must be a boolean"));
  }
  return j[key].get<bool>();
}

absl::StatusOr<std::string> ParseStringPattern(const nlohmann::json& j,
                                               const std::string& where) {
  if (j.is_object() && j.contains("String") && j["String"].is_string()) {
    return j["String"].get<std::string>();
  }
  if (j.is_object() && j.contains("Regex")) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": Regex patterns are not supported here (only String)"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(where, ": 'pattern' must be {\"String\": ...}"));
}

namespace {

class NfcNormalizer : public Normalizer {
 public:
  absl::Status Apply(std::string* text) const override {
    CARE_ASSIGN_OR_RETURN(*text, Nfc(*text));
    return absl::OkStatus();
  }
};

// HF prepends only to non-empty strings.
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Apply(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Apply(std::string* text) const override {
    if (!pattern_.empty()) {
      *text = absl::StrReplaceAll(*text, {{pattern_, content_}});
    }
    return absl::OkStatus();
  }

 private:
  std::string pattern_, content_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Apply(std::string* text) const override {
    for (const auto& p : parts_) CARE_RETURN_IF_ERROR(p->Apply(text));
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const nlohmann::json& j, const std::string& where) {
  CARE_ASSIGN_OR_RETURN(const std::string type, JsonString(j, "type", where));
  if (type == "NFC") return std::make_unique<NfcNormalizer>();
  if (type == "Prepend") {
    CARE_ASSIGN_OR_RETURN(std::string prefix,
                          JsonString(j, "prepend", where + " (Prepend)"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    const std::string w = where + " (Replace)";
    if (!j.contains("pattern")) {
      return absl::InvalidArgumentError(w + ": missing 'pattern'");
    }
    CARE_ASSIGN_OR_RETURN(std::string pattern,
                          ParseStringPattern(j["pattern"], w));
    CARE_ASSIGN_OR_RETURN(std::string content, JsonString(j, "content", w));
    return std::make_unique<ReplaceNormalizer>(std::move(pattern),
                                               std::move(content));
  }
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return absl::InvalidArgumentError(
          where + " (Sequence): 'normalizers' must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < j["normalizers"].size(); ++i) {
      CARE_ASSIGN_OR_RETURN(
          auto part,
          ParseNormalizer(j["normalizers"][i],
                          absl::StrCat(where, ".normalizers[", i, "]")));
      parts.push_back(std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  return absl::UnimplementedError(
      absl::StrCat(where, ": normalizer type '", type,
                   "' is not supported (supported: NFC, Prepend, Replace, "
                   "Sequence)"));
}

}  // namespace care::tok
