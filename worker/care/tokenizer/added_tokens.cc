#include "care/tokenizer/added_tokens.h"

#include <algorithm>

#include "care/tokenizer/unicode.h"

namespace care::tok {
namespace {

// The code point ending just before byte `pos` (pos > 0, well-formed text).
char32_t CodePointBefore(absl::string_view text, size_t pos, size_t* start) {
  size_t b = pos - 1;
  while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
  std::vector<char32_t> cps;
  DecodeUtf8(text.substr(b, pos - b), &cps, nullptr);
  *start = b;
  return cps.empty() ? 0 : cps[0];
}

char32_t CodePointAt(absl::string_view text, size_t pos, size_t* end) {
  const size_t len = std::min(Utf8Length(static_cast<unsigned char>(text[pos])),
                              text.size() - pos);
  std::vector<char32_t> cps;
  DecodeUtf8(text.substr(pos, len), &cps, nullptr);
  *end = pos + len;
  return cps.empty() ? 0 : cps[0];
}

// Rust's char::is_alphanumeric() || '_' (approximated by L* and N*).
bool IsWordChar(char32_t c) { return c == '_' || IsLetter(c) || IsNumber(c); }

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<AddedToken> tokens,
                                     std::vector<std::string> contents)
    : tokens_(std::move(tokens)), contents_(std::move(contents)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (contents_[i].empty()) continue;
    by_first_byte_[static_cast<unsigned char>(contents_[i][0])].push_back(
        static_cast<int32_t>(i));
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return contents_[a].size() > contents_[b].size();
    });
  }
}

std::vector<Segment> AddedTokenMatcher::Split(absl::string_view text) const {
  std::vector<Segment> out;
  size_t emitted = 0;  // End of the last emitted segment.
  size_t i = 0;
  auto emit_text = [&](size_t b, size_t e) {
    if (e > b) out.push_back({text.substr(b, e - b), -1, b});
  };
  while (i < text.size()) {
    const auto& candidates =
        by_first_byte_[static_cast<unsigned char>(text[i])];
    int32_t match = -1;
    for (int32_t c : candidates) {
      const std::string& s = contents_[c];
      if (text.compare(i, s.size(), s) != 0) continue;
      if (tokens_[c].single_word) {
        size_t unused;
        if (i > 0 && IsWordChar(CodePointBefore(text, i, &unused))) continue;
        const size_t e = i + s.size();
        if (e < text.size() && IsWordChar(CodePointAt(text, e, &unused))) {
          continue;
        }
      }
      match = c;
      break;  // Longest first.
    }
    if (match < 0) {
      ++i;
      continue;
    }
    size_t start = i;
    size_t stop = i + contents_[match].size();
    if (tokens_[match].lstrip) {
      while (start > emitted) {
        size_t b;
        if (!IsWhitespace(CodePointBefore(text, start, &b))) break;
        start = b;
      }
    }
    if (tokens_[match].rstrip) {
      while (stop < text.size()) {
        size_t e;
        if (!IsWhitespace(CodePointAt(text, stop, &e))) break;
        stop = e;
      }
    }
    emit_text(emitted, start);
    out.push_back({text.substr(start, stop - start), tokens_[match].id, start});
    emitted = stop;
    i = stop;
  }
  emit_text(emitted, text.size());
  return out;
}

}  // namespace care::tok
