#include "care/tokenizer/tokenizer.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/tokenizer/hf_tokenizer.h"
#include "care/tokenizer/sentencepiece_tokenizer.h"

namespace care::tok {

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(model_dir);
  if (fs::is_regular_file(p, ec)) {
    if (p.extension() == ".json") {
      CARE_ASSIGN_OR_RETURN(auto t, HfTokenizer::FromFile(model_dir));
      return std::unique_ptr<Tokenizer>(std::move(t));
    }
    CARE_ASSIGN_OR_RETURN(auto t, SentencePieceTokenizer::FromFile(model_dir));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }
  if (!fs::is_directory(p, ec)) {
    return absl::NotFoundError(
        absl::StrCat("tokenizer: ", model_dir, " is not a directory"));
  }
  const fs::path json = p / "tokenizer.json";
  if (fs::exists(json, ec)) {
    CARE_ASSIGN_OR_RETURN(auto t, HfTokenizer::FromFile(json.string()));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }
  const fs::path model = p / "tokenizer.model";
  if (fs::exists(model, ec)) {
    CARE_ASSIGN_OR_RETURN(auto t,
                          SentencePieceTokenizer::FromFile(model.string()));
    return std::unique_ptr<Tokenizer>(std::move(t));
  }
  return absl::NotFoundError(
      absl::StrCat("tokenizer: ", model_dir,
                   " holds neither tokenizer.json nor tokenizer.model"));
}

}  // namespace care::tok
