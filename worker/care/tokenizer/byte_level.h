// GPT-2's reversible byte <-> printable code point table used by ByteLevel
// pre-tokenizers and decoders: bytes that are printable Latin-1 map to
// themselves, the other 68 to U+0100.. in byte order.
#ifndef CARE_TOKENIZER_BYTE_LEVEL_H_
#define CARE_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace care::tok {

// UTF-8 of the code point standing for each byte.
const std::array<std::string, 256>& ByteToUnicode();

// The byte a code point stands for, or nullopt if it is not in the table.
std::optional<unsigned char> UnicodeToByte(char32_t cp);

// Maps each byte of `bytes` to its code point, appending UTF-8 to *out.
void ByteLevelEncode(absl::string_view bytes, std::string* out);

// Inverse of ByteLevelEncode, HF-style: if any code point of `token` is
// outside the table, the token's own bytes are appended unchanged.
void ByteLevelDecodeToken(absl::string_view token, std::string* out);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_BYTE_LEVEL_H_
