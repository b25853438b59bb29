// tokenizer.json normalizers: NFC, Prepend, Replace (String pattern) and
// Sequence. Any other type is an error naming it.
#ifndef CARE_TOKENIZER_NORMALIZERS_H_
#define CARE_TOKENIZER_NORMALIZERS_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace care::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual absl::Status Apply(std::string* text) const = 0;
};

// `where` names the JSON location for errors, e.g. "tokenizer.json normalizer".
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(
    const nlohmann::json& j, const std::string& where);

// The "String" of a {"String": ...} pattern; errors on {"Regex": ...}.
absl::StatusOr<std::string> ParseStringPattern(const nlohmann::json& j,
                                               const std::string& where);

// Field helpers that never throw: a missing key yields the fallback, a key of
// the wrong type an InvalidArgument naming `where` and the key.
absl::StatusOr<std::string> JsonString(const nlohmann::json& j, const char* key,
                                       const std::string& where);
absl::StatusOr<bool> JsonBool(const nlohmann::json& j, const char* key,
                              bool fallback, const std::string& where);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_NORMALIZERS_H_
