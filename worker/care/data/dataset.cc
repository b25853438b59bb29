#include "care/data/dataset.h"

#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "care/tokenizer/unicode.h"
#include "nlohmann/json.hpp"

namespace care::data {
namespace {

bool IsBlank(absl::string_view line) {
  for (char c : line) {
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

absl::StatusOr<std::string> JoinJsonl(const std::string& path,
                                      const std::string& bytes,
                                      const TextOptions& options) {
  std::string out;
  size_t docs = 0;
  size_t line_no = 0;
  size_t pos = 0;
  while (pos < bytes.size()) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    const absl::string_view line(bytes.data() + pos, end - pos);
    ++line_no;
    pos = end + 1;
    if (IsBlank(line)) continue;
    const nlohmann::json j = nlohmann::json::parse(
        line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": not a JSON object"));
    }
    if (!j.contains(options.text_field) || !j[options.text_field].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_no,
                                                     ": missing string field '",
                                                     options.text_field, "'"));
    }
    if (docs++ > 0) out += options.separator;
    out += j[options.text_field].get_ref<const std::string&>();
  }
  if (docs == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty data (no JSONL documents)"));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> LoadText(const std::string& path,
                                     const TextOptions& options) {
  CARE_ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path));
  // Checked on the raw bytes so the offset is the file's byte offset.
  CARE_RETURN_IF_ERROR(care::tok::ValidateUtf8(bytes, path));
  if (absl::EndsWith(path, ".jsonl")) return JoinJsonl(path, bytes, options);
  if (!absl::EndsWith(path, ".txt")) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unknown text format (expected .txt or .jsonl)"));
  }
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty data"));
  }
  return bytes;
}

absl::StatusOr<std::vector<int32_t>> ReadTokenFile(const std::string& path) {
  size_t width;
  if (absl::EndsWith(path, ".u16")) {
    width = 2;
  } else if (absl::EndsWith(path, ".u32")) {
    width = 4;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": unknown token file format (expected .u16/.u32)"));
  }
  CARE_ASSIGN_OR_RETURN(const std::string bytes, ReadFileToString(path));
  if (bytes.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty data"));
  }
  if (bytes.size() % width != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": size ", bytes.size(),
                     " bytes is not a multiple of the id width ", width));
  }
  const size_t n = bytes.size() / width;
  std::vector<int32_t> ids(n);
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  for (size_t i = 0; i < n; ++i) {
    // Little-endian regardless of the host.
    uint32_t v = 0;
    for (size_t b = 0; b < width; ++b) {
      v |= static_cast<uint32_t>(p[i * width + b]) << (8 * b);
    }
    if (v > static_cast<uint32_t>(INT32_MAX)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": id ", v, " at index ", i, " exceeds 2^31-1"));
    }
    ids[i] = static_cast<int32_t>(v);
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> LoadTokenStream(
    const std::string& path, const care::tok::Tokenizer* tokenizer,
    const TextOptions& options) {
  if (absl::EndsWith(path, ".u16") || absl::EndsWith(path, ".u32")) {
    CARE_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ReadTokenFile(path));
    if (tokenizer != nullptr) {
      const int64_t vocab = tokenizer->vocab_size();
      for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] >= vocab) {
          return absl::InvalidArgumentError(
              absl::StrCat(path, ": id ", ids[i], " at index ", i,
                           " is outside the vocabulary [0, ", vocab, ")"));
        }
      }
    }
    return ids;
  }
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a tokenizer is required to read text datasets"));
  }
  CARE_ASSIGN_OR_RETURN(const std::string text, LoadText(path, options));
  CARE_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tokenizer->Encode(text));
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": empty data (the text encodes to no tokens)"));
  }
  return ids;
}

}  // namespace care::data
