#include "proto/api/token_file.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "base/annotate.h"
#include "base/file.h"

namespace care::api {

absl::Status CheckToken(absl::string_view token, absl::string_view source,
                        size_t min_bytes) {
  if (token.empty())
    return absl::InvalidArgumentError(absl::StrCat(source, ": empty token"));
  for (char c : token) {
    const auto byte = static_cast<unsigned char>(c);
    if (byte <= 0x20 || byte >= 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          source,
          ": the token contains a space, control character or non-ASCII "
          "byte (a token is printable non-space ASCII; not shown)"));
    }
  }
  if (token.size() < min_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": a token needs at least ", min_bytes,
                     " printable non-space ASCII bytes"));
  }
  if (token.size() > kMaxTokenBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": the token is ", token.size(),
                     " bytes; at most ", kMaxTokenBytes, " are allowed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadTokenFile(const std::string& path,
                                                       size_t min_bytes) {
  absl::StatusOr<std::string> read = care::ReadFileToString(path);
  if (!read.ok()) return care::Annotate(read.status(), "token file");
  const std::string& text = *read;
  std::vector<std::string> tokens;
  int number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (absl::Status ok = CheckToken(
            line, absl::StrCat("token file ", path, " line ", number),
            min_bytes);
        !ok.ok()) {
      return ok;
    }
    tokens.emplace_back(line);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " holds no token"));
  }
  return tokens;
}

absl::StatusOr<std::string> ReadSingleTokenFile(const std::string& path) {
  absl::StatusOr<std::vector<std::string>> tokens = ReadTokenFile(path);
  if (!tokens.ok()) return tokens.status();
  if (tokens->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " holds ", tokens->size(),
                     " tokens; it must hold exactly one (other lines may be "
                     "blank or '#' comments)"));
  }
  return std::move((*tokens)[0]);
}

}  // namespace care::api
