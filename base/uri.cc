#include "base/uri.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace care {
namespace {

bool IsRepoChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

// The character starting at part[i] for an error message: a whole UTF-8
// sequence (never a lone byte of one, which would make the message invalid
// UTF-8), or \xNN for a byte that starts no valid sequence.
std::string CharacterAt(absl::string_view part, size_t i) {
  const auto lead = static_cast<unsigned char>(part[i]);
  const size_t length = lead < 0x80             ? 1
                        : (lead & 0xE0) == 0xC0 ? 2
                        : (lead & 0xF0) == 0xE0 ? 3
                        : (lead & 0xF8) == 0xF0 ? 4
                                                : 0;
  bool valid = length > 0 && i + length <= part.size();
  for (size_t k = 1; valid && k < length; ++k) {
    valid = (static_cast<unsigned char>(part[i + k]) & 0xC0) == 0x80;
  }
  if (valid) return std::string(part.substr(i, length));
  return absl::StrFormat("\\x%02X", lead);
}

absl::Status CheckRepoPart(absl::string_view part, absl::string_view uri) {
  if (part.empty() || part.size() > 96 || part == "." || part == ".." ||
      part.front() == '-' || part.front() == '.') {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid Hugging Face repo component '", part, "' in '", uri, "'"));
  }
  for (size_t i = 0; i < part.size(); ++i) {
    if (!IsRepoChar(part[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid character '", CharacterAt(part, i), "' in '",
                       uri, "' (repo ids use letters, digits, '-', '_', '.')"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Uri> ParseHub(absl::string_view uri) {
  absl::string_view rest = uri.substr(5);  // After "hf://".
  Uri out;
  out.kind = Uri::Kind::kHuggingFace;
  out.revision = "main";
  if (size_t at = rest.find('@'); at != absl::string_view::npos) {
    absl::string_view rev = rest.substr(at + 1);
    if (rev.empty() || rev.size() > 256 || absl::StrContains(rev, "..")) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid revision in '", uri, "'"));
    }
    for (char c : rev) {
      if (!IsRepoChar(c) && c != '/') {
        return absl::InvalidArgumentError(
            absl::StrCat("invalid revision character in '", uri, "'"));
      }
    }
    out.revision = std::string(rev);
    rest = rest.substr(0, at);
  }
  std::vector<absl::string_view> parts = absl::StrSplit(rest, '/');
  if (parts.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", uri, "' must be hf://org/name[@revision]"));
  }
  for (absl::string_view p : parts) {
    absl::Status s = CheckRepoPart(p, uri);
    if (!s.ok()) return s;
  }
  out.repo_id = std::string(rest);
  return out;
}

absl::StatusOr<Uri> ParseLocal(absl::string_view uri, absl::string_view path) {
  if (path.empty() || path.front() != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("'", uri, "' is not an absolute path"));
  }
  std::vector<absl::string_view> kept;
  for (absl::string_view part : absl::StrSplit(path, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      return absl::InvalidArgumentError(
          absl::StrCat("'", uri, "' contains a '..' component"));
    }
    kept.push_back(part);
  }
  Uri out;
  out.kind = Uri::Kind::kLocal;
  out.path = absl::StrCat("/", absl::StrJoin(kept, "/"));
  return out;
}

}  // namespace

absl::StatusOr<Uri> ParseUri(absl::string_view text, bool allow_hub) {
  if (text.empty()) return absl::InvalidArgumentError("empty URI");
  if (text.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError("URI contains a NUL byte");
  }
  if (absl::StartsWith(text, "hf://")) {
    if (!allow_hub) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", text, "': hf:// is not allowed here"));
    }
    return ParseHub(text);
  }
  if (absl::StartsWith(text, "file://")) {
    return ParseLocal(text, text.substr(7));
  }
  if (size_t colon = text.find("://"); colon != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported URI scheme '", text.substr(0, colon), "' in '", text,
        "' (use an absolute path, file:// or hf://)"));
  }
  return ParseLocal(text, text);
}

}  // namespace care
