#include "care/tokenizer/split_patterns.h"

#include "care/tokenizer/unicode.h"

namespace care::tok {

const char kGpt2Pattern[] =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::optional<SplitPattern> RecognizeSplitPattern(absl::string_view regex) {
  if (regex == kGpt2Pattern) return SplitPattern::kGpt2;
  if (regex == kLlama3Pattern) return SplitPattern::kLlama3;
  if (regex == kQwen2Pattern) return SplitPattern::kQwen2;
  return std::nullopt;
}

namespace {

// Character classes, with a flat table for ASCII (the common case).
enum Class : unsigned char { kLetter, kNumber, kSpace, kOther };

Class Classify(char32_t c) {
  if (IsLetter(c)) return kLetter;
  if (IsNumber(c)) return kNumber;
  if (IsWhitespace(c)) return kSpace;
  return kOther;
}

bool IsCrLf(char32_t c) { return c == '\r' || c == '\n'; }

// Oniguruma's (?i) matches a letter with everything in its case-fold orbit:
// s/S/U+017F (long s); the other contraction letters fold only to upper case.
char32_t FoldContractionLetter(char32_t c) {
  if (c == 0x17F) return 's';
  if (c >= 'A' && c <= 'Z') return c + 32;
  return c;
}

// 's|'t|'re|'ve|'m|'ll|'d at i; returns the match length or 0.
size_t MatchContraction(const std::vector<char32_t>& cps, size_t i,
                        bool ignore_case) {
  const size_t n = cps.size();
  if (cps[i] != '\'' || i + 1 >= n) return 0;
  auto at = [&](size_t k) -> char32_t {
    if (k >= n) return 0;
    return ignore_case ? FoldContractionLetter(cps[k]) : cps[k];
  };
  const char32_t a = at(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  const char32_t b = at(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') ||
      (a == 'l' && b == 'l')) {
    return 3;
  }
  return 0;
}

// End of the maximal run of class `c` starting at i.
size_t RunEnd(const std::vector<Class>& cls, size_t i, Class c) {
  while (i < cls.size() && cls[i] == c) ++i;
  return i;
}

// \s+(?!\S) then \s+ at a whitespace position i (shared by all patterns).
size_t MatchSpaces(const std::vector<Class>& cls, size_t i) {
  const size_t w = RunEnd(cls, i, kSpace);
  if (w == cls.size()) return w - i;
  if (w - i >= 2) return w - i - 1;  // Leave one space for the next word.
  return 1;                          // \s+ alone.
}

size_t MatchGpt2(const std::vector<char32_t>& cps,
                 const std::vector<Class>& cls, size_t i) {
  const size_t n = cps.size();
  if (size_t len = MatchContraction(cps, i, /*ignore_case=*/false)) return len;
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`.
  const size_t j = (cps[i] == ' ' && i + 1 < n) ? i + 1 : i;
  if (cls[j] != kSpace) return RunEnd(cls, j, cls[j]) - i;
  return MatchSpaces(cls, i);
}

// Llama-3 (max_digits 3) and Qwen2 (max_digits 1) differ only in \p{N}{1,k}.
size_t MatchLlama3Family(const std::vector<char32_t>& cps,
                         const std::vector<Class>& cls, size_t i,
                         size_t max_digits) {
  const size_t n = cps.size();
  if (size_t len = MatchContraction(cps, i, /*ignore_case=*/true)) return len;
  const Class c = cls[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c == kLetter) return RunEnd(cls, i, kLetter) - i;
  if (c != kNumber && !IsCrLf(cps[i]) && i + 1 < n && cls[i + 1] == kLetter) {
    return RunEnd(cls, i + 1, kLetter) - i;
  }
  // \p{N}{1,k}
  if (c == kNumber) {
    size_t e = i;
    while (e < n && e - i < max_digits && cls[e] == kNumber) ++e;
    return e - i;
  }
  // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
  {
    const size_t j = (cps[i] == ' ' && i + 1 < n) ? i + 1 : i;
    if (cls[j] == kOther) {
      size_t e = RunEnd(cls, j, kOther);
      while (e < n && IsCrLf(cps[e])) ++e;
      return e - i;
    }
  }
  // Here c is whitespace. \s*[\r\n]+ : up to the last CR/LF of the run.
  const size_t w = RunEnd(cls, i, kSpace);
  for (size_t k = w; k > i; --k) {
    if (IsCrLf(cps[k - 1])) return k - i;
  }
  return MatchSpaces(cls, i);
}

}  // namespace

std::vector<std::pair<size_t, size_t>> SplitIsolated(
    const std::vector<char32_t>& cps, SplitPattern pattern) {
  std::vector<Class> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = Classify(cps[i]);
  std::vector<std::pair<size_t, size_t>> pieces;
  size_t i = 0;
  while (i < cps.size()) {
    size_t len = 0;
    switch (pattern) {
      case SplitPattern::kGpt2:
        len = MatchGpt2(cps, cls, i);
        break;
      case SplitPattern::kLlama3:
        len = MatchLlama3Family(cps, cls, i, 3);
        break;
      case SplitPattern::kQwen2:
        len = MatchLlama3Family(cps, cls, i, 1);
        break;
    }
    // Every code point is a letter, number, space or other, and each class
    // starts some alternative, so len >= 1 always (no gaps to emit).
    if (len == 0) len = 1;
    pieces.emplace_back(i, i + len);
    i += len;
  }
  return pieces;
}

}  // namespace care::tok
