#include "care/tokenizer/unicode.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "utf8proc.h"

namespace care::tok {
namespace {

// Length of the well-formed sequence at p (1..4), or 0 when ill-formed, with
// *subpart set to the length of the maximal ill-formed prefix (>= 1), per
// Unicode Table 3-7.
size_t SequenceLength(const unsigned char* p, size_t n, size_t* subpart) {
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return 1;
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;  // Bounds of the second byte.
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    need = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    need = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    need = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    *subpart = 1;
    return 0;
  }
  size_t i = 1;
  for (; i < need; ++i) {
    if (i >= n) break;
    const unsigned char b = p[i];
    const bool ok = (i == 1) ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!ok) break;
  }
  if (i == need) return need;
  *subpart = i;
  return 0;
}

}  // namespace

absl::Status ValidateUtf8(absl::string_view text, absl::string_view what) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    size_t subpart = 0;
    const size_t len = SequenceLength(p + i, n - i, &subpart);
    if (len == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": invalid UTF-8 at byte offset ", i, " (byte 0x",
                       absl::Hex(p[i], absl::kZeroPad2), ")"));
    }
    i += len;
  }
  return absl::OkStatus();
}

void DecodeUtf8(absl::string_view text, std::vector<char32_t>* code_points,
                std::vector<size_t>* offsets) {
  code_points->clear();
  code_points->reserve(text.size());
  if (offsets != nullptr) {
    offsets->clear();
    offsets->reserve(text.size() + 1);
  }
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    if (offsets != nullptr) offsets->push_back(i);
    const unsigned char b0 = p[i];
    char32_t cp;
    size_t len = Utf8Length(b0);
    if (i + len > n) len = 1;  // Only for ill-formed input; stays in bounds.
    switch (len) {
      case 2:
        cp = ((b0 & 0x1F) << 6) | (p[i + 1] & 0x3F);
        break;
      case 3:
        cp = ((b0 & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
        break;
      case 4:
        cp = ((b0 & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) |
             ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
        break;
      default:
        cp = b0;
    }
    code_points->push_back(cp);
    i += len;
  }
  if (offsets != nullptr) offsets->push_back(n);
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsLetter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
}

bool IsNumber(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  const auto c = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
  return c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
}

bool IsWhitespace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= 0x09 && cp <= 0x0D);
  switch (cp) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

namespace {

absl::StatusOr<std::string> NfcChunk(absl::string_view text) {
  utf8proc_uint8_t* out = nullptr;
  const utf8proc_ssize_t len = utf8proc_map(
      reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
      static_cast<utf8proc_ssize_t>(text.size()), &out,
      static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (len < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("NFC normalizer: ", utf8proc_errmsg(len)));
  }
  std::string result(reinterpret_cast<const char*>(out),
                     static_cast<size_t>(len));
  std::free(out);
  return result;
}

}  // namespace

absl::StatusOr<std::string> Nfc(absl::string_view text) {
  bool ascii = true;
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return std::string(text);  // ASCII is always NFC.
  // utf8proc stops at U+0000 even with an explicit length; U+0000 is a
  // starter that never composes, so the chunks between NULs normalize
  // independently.
  std::string result;
  result.reserve(text.size());
  size_t pos = 0;
  while (true) {
    const size_t nul = text.find('\0', pos);
    const absl::string_view chunk = text.substr(
        pos,
        nul == absl::string_view::npos ? absl::string_view::npos : nul - pos);
    if (!chunk.empty()) {
      absl::StatusOr<std::string> part = NfcChunk(chunk);
      if (!part.ok()) return part.status();
      result += *part;
    }
    if (nul == absl::string_view::npos) break;
    result.push_back('\0');
    pos = nul + 1;
  }
  return result;
}

std::string Utf8Lossy(absl::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    if (p[i] < 0x80) {
      out.push_back(static_cast<char>(p[i++]));
      continue;
    }
    size_t subpart = 0;
    const size_t len = SequenceLength(p + i, n - i, &subpart);
    if (len == 0) {
      out += "\xEF\xBF\xBD";
      i += subpart;
    } else {
      out.append(bytes.data() + i, len);
      i += len;
    }
  }
  return out;
}

}  // namespace care::tok
