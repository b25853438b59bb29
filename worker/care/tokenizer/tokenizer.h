// Tokenizers of the models CARE converts: Hugging Face tokenizer.json (BPE,
// byte-level or Metaspace/byte_fallback) implemented here, and SentencePiece
// tokenizer.model through the SentencePiece library. See docs/tokenizers.md.
#ifndef CARE_TOKENIZER_TOKENIZER_H_
#define CARE_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::tok {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Encodes text exactly as the HF tokenizer / SentencePiece does with no
  // special tokens added (add_special_tokens=False semantics; special/added
  // tokens written in the text ARE matched). Thread-safe. InvalidArgument on
  // ill-formed UTF-8 (with the byte offset).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const = 0;
  // Special tokens are kept; no clean-up of spaces. InvalidArgument names an
  // id outside [0, vocab_size()).
  virtual absl::StatusOr<std::string> Decode(
      const std::vector<int32_t>& ids) const = 0;
  // One past the largest id (model vocabulary plus added tokens).
  virtual int64_t vocab_size() const = 0;
  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::optional<int32_t> eos_id() const = 0;
};

// Picks <dir>/tokenizer.json when present, else <dir>/tokenizer.model.
// `model_dir` may also name one of those files directly.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_TOKENIZER_H_
