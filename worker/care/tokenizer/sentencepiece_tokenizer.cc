#include "care/tokenizer/sentencepiece_tokenizer.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/tokenizer/unicode.h"

namespace care::tok {

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::FromFile(const std::string& path) {
  std::string error;
  std::unique_ptr<spw::Processor> sp = spw::Processor::Load(path, &error);
  if (sp == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cannot load SentencePiece model: ", error));
  }
  auto t = std::make_unique<SentencePieceTokenizer>();
  t->path_ = path;
  t->vocab_size_ = sp->piece_size();
  t->sp_ = std::move(sp);
  return t;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text) const {
  CARE_RETURN_IF_ERROR(ValidateUtf8(text, path_ + ": Encode text"));
  std::vector<int> ids;
  std::string error;
  if (!sp_->Encode(text.data(), text.size(), &ids, &error)) {
    return absl::InternalError(
        absl::StrCat(path_, ": SentencePiece Encode failed: ", error));
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

absl::StatusOr<std::string> SentencePieceTokenizer::Decode(
    const std::vector<int32_t>& ids) const {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": Decode: ids[", i, "] = ", ids[i],
                       " is outside the vocabulary [0, ", vocab_size_, ")"));
    }
  }
  std::string text, error;
  if (!sp_->Decode(std::vector<int>(ids.begin(), ids.end()), &text, &error)) {
    return absl::InternalError(
        absl::StrCat(path_, ": SentencePiece Decode failed: ", error));
  }
  return text;
}

std::optional<int32_t> SentencePieceTokenizer::bos_id() const {
  const int id = sp_->bos_id();
  if (id < 0) return std::nullopt;
  return id;
}

std::optional<int32_t> SentencePieceTokenizer::eos_id() const {
  const int id = sp_->eos_id();
  if (id < 0) return std::nullopt;
  return id;
}

}  // namespace care::tok
