#include "care/tokenizer/byte_level.h"

#include <vector>

#include "care/tokenizer/unicode.h"

namespace care::tok {
namespace {

struct Tables {
  std::array<std::string, 256> to_unicode;
  std::array<char32_t, 256> code_point{};
  Tables() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable =
          (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      code_point[b] = printable ? static_cast<char32_t>(b)
                                : static_cast<char32_t>(256 + extra++);
      AppendUtf8(code_point[b], &to_unicode[b]);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

const std::array<std::string, 256>& ByteToUnicode() {
  return GetTables().to_unicode;
}

std::optional<unsigned char> UnicodeToByte(char32_t cp) {
  // Printable bytes map to themselves; the others to 256 + their index
  // among the non-printable bytes (0..67).
  if (cp < 256) {
    const bool printable =
        (cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
    if (printable) return static_cast<unsigned char>(cp);
    return std::nullopt;
  }
  if (cp >= 256 + 68) return std::nullopt;
  static const std::array<unsigned char, 68>* inverse = [] {
    auto* inv = new std::array<unsigned char, 68>();
    const Tables& t = GetTables();
    for (int b = 0; b < 256; ++b) {
      if (t.code_point[b] >= 256) (*inv)[t.code_point[b] - 256] = b;
    }
    return inv;
  }();
  return (*inverse)[cp - 256];
}

void ByteLevelEncode(absl::string_view bytes, std::string* out) {
  const auto& table = GetTables().to_unicode;
  for (char c : bytes) out->append(table[static_cast<unsigned char>(c)]);
}

void ByteLevelDecodeToken(absl::string_view token, std::string* out) {
  std::vector<char32_t> cps;
  DecodeUtf8(token, &cps, nullptr);
  const size_t mark = out->size();
  for (char32_t cp : cps) {
    const std::optional<unsigned char> b = UnicodeToByte(cp);
    if (!b.has_value()) {
      out->resize(mark);
      out->append(token.data(), token.size());
      return;
    }
    out->push_back(static_cast<char>(*b));
  }
}

}  // namespace care::tok
