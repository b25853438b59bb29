// The documents of a rolling-perplexity evaluation (rolling.h) from a file:
//   .txt         one document (kWikiText: the WikiText pages, detokenized)
//   .jsonl       one document per record's text field
//   .u16 / .u32  one document of ids (no words or bytes: word and byte
//                perplexity are then not reported)
// Words and bytes are counted on the text before detokenization, as lm-eval
// does for wikitext.
#ifndef CARE_EVAL_DOCUMENTS_H_
#define CARE_EVAL_DOCUMENTS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/eval/rolling.h"
#include "care/tokenizer/tokenizer.h"

namespace care::eval {

enum class DocumentSplit { kWhole, kWikiText };

struct DocumentOptions {
  DocumentSplit split = DocumentSplit::kWhole;
  std::string text_field = "text";  // .jsonl
  int64_t max_documents = 0;        // the first N documents; 0 = all
};

// "whole" or "wikitext".
absl::StatusOr<DocumentSplit> ParseDocumentSplit(const std::string& name);

// tokenizer may be null for id files.
absl::StatusOr<std::vector<RollingDocument>> LoadRollingDocuments(
    const std::string& path, const tok::Tokenizer* tokenizer,
    const DocumentOptions& options = {});

// Text documents to RollingDocuments (split, detokenize, encode, count).
absl::StatusOr<std::vector<RollingDocument>> MakeRollingDocuments(
    const std::vector<std::string>& texts, const tok::Tokenizer& tokenizer,
    DocumentSplit split);

}  // namespace care::eval

#endif  // CARE_EVAL_DOCUMENTS_H_
