// Hugging Face tokenizer.json with a BPE model: added tokens, normalizer,
// pre-tokenizer, BPE, decoder. The post-processor is not run (encoding adds
// no special tokens); truncation/padding settings are ignored.
#ifndef CARE_TOKENIZER_HF_TOKENIZER_H_
#define CARE_TOKENIZER_HF_TOKENIZER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "care/tokenizer/added_tokens.h"
#include "care/tokenizer/bpe_model.h"
#include "care/tokenizer/decoders.h"
#include "care/tokenizer/normalizers.h"
#include "care/tokenizer/pre_tokenizers.h"
#include "care/tokenizer/tokenizer.h"

namespace care::tok {

class HfTokenizer : public Tokenizer {
 public:
  // `json_text`: the tokenizer.json contents; `config_text`: the optional
  // tokenizer_config.json contents, read only for bos_token/eos_token.
  // `name` labels errors (usually the file path).
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(
      absl::string_view json_text, absl::string_view config_text,
      const std::string& name);
  // Reads <path> and, when present, tokenizer_config.json next to it.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromFile(
      const std::string& path);

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(
      const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  std::optional<int32_t> eos_id() const override { return eos_id_; }

 private:
  HfTokenizer() = default;
  absl::Status EncodeText(absl::string_view text, bool at_text_start,
                          std::vector<int32_t>* ids) const;
  std::optional<int32_t> TokenToId(absl::string_view token) const;

  std::string name_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;       // May be null.
  std::unique_ptr<PreTokenizer> pre_tokenizer_;  // May be null.
  std::unique_ptr<Decoder> decoder_;             // May be null.
  AddedTokenMatcher raw_matcher_;                // normalized=false tokens.
  AddedTokenMatcher normalized_matcher_;         // normalized=true tokens.
  absl::flat_hash_map<int32_t, std::string> added_content_;
  int64_t vocab_size_ = 0;
  std::optional<int32_t> bos_id_, eos_id_;
};

}  // namespace care::tok

#endif  // CARE_TOKENIZER_HF_TOKENIZER_H_
