// tokenizer.model through Debian's SentencePiece library.
#ifndef CARE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
#define CARE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_

#include <memory>
#include <string>

#include "care/tokenizer/sentencepiece_wrapper.h"
#include "care/tokenizer/tokenizer.h"

namespace care::tok {

class SentencePieceTokenizer : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> FromFile(
      const std::string& path);

  // SentencePiece's own encoding: no BOS/EOS, its normalization (e.g.
  // remove_extra_whitespaces) and dummy prefix as stored in the model.
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  absl::StatusOr<std::string> Decode(
      const std::vector<int32_t>& ids) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override;
  std::optional<int32_t> eos_id() const override;

 private:
  std::string path_;
  std::unique_ptr<spw::Processor> sp_;
  int64_t vocab_size_ = 0;
};

}  // namespace care::tok

#endif  // CARE_TOKENIZER_SENTENCEPIECE_TOKENIZER_H_
