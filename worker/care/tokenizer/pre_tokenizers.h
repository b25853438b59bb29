// tokenizer.json pre-tokenizers: Split (the GPT-2 / Llama-3 / Qwen2 regexes,
// recognised by their exact string, behavior Isolated), ByteLevel, Metaspace
// and Sequence. Any other type or pattern is an error naming it.
#ifndef CARE_TOKENIZER_PRE_TOKENIZERS_H_
#define CARE_TOKENIZER_PRE_TOKENIZERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace care::tok {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits/transforms each piece in place. `at_text_start`: pieces[0]
  // begins at offset 0 of the original text (Metaspace prepend_scheme
  // "first").
  virtual void Apply(std::vector<std::string>* pieces,
                     bool at_text_start) const = 0;
};

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(
    const nlohmann::json& j, const std::string& where);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_PRE_TOKENIZERS_H_
