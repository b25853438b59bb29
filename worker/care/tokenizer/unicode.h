// UTF-8 decoding/encoding and the Unicode character classes the tokenizers
// need (\p{L}, \p{N}, \s as Oniguruma/HF tokenizers define them), on top of
// utf8proc.
#ifndef CARE_TOKENIZER_UNICODE_H_
#define CARE_TOKENIZER_UNICODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::tok {

// OK when `text` is well-formed UTF-8 (no surrogates, no overlongs); else
// InvalidArgument naming `what` and the byte offset of the first bad byte.
absl::Status ValidateUtf8(absl::string_view text, absl::string_view what);

// Decodes well-formed UTF-8 (call ValidateUtf8 first). `offsets` (optional)
// receives the byte offset of each code point plus a final text.size().
void DecodeUtf8(absl::string_view text, std::vector<char32_t>* code_points,
                std::vector<size_t>* offsets);

// Byte length of the UTF-8 sequence starting with `lead` (1 for invalid).
inline size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

void AppendUtf8(char32_t cp, std::string* out);

// General category L* (Lu, Ll, Lt, Lm, Lo).
bool IsLetter(char32_t cp);
// General category N* (Nd, Nl, No).
bool IsNumber(char32_t cp);
// The White_Space property (what Oniguruma's Unicode \s matches): TAB..CR,
// SPACE, U+0085, NBSP, U+1680, U+2000..200A, U+2028/9, U+202F, U+205F, U+3000.
bool IsWhitespace(char32_t cp);

// Canonical composition (NFC) of well-formed UTF-8; embedded NULs are kept.
absl::StatusOr<std::string> Nfc(absl::string_view text);

// Replaces every ill-formed sequence by U+FFFD, as Rust's
// String::from_utf8_lossy does (one U+FFFD per maximal invalid subpart).
std::string Utf8Lossy(absl::string_view bytes);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_UNICODE_H_
