#include "care/eval/documents.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/file.h"
#include "base/status_macros.h"
#include "care/data/dataset.h"

namespace care::eval {

absl::StatusOr<DocumentSplit> ParseDocumentSplit(const std::string& name) {
  if (name == "whole") return DocumentSplit::kWhole;
  if (name == "wikitext") return DocumentSplit::kWikiText;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown document split '", name, "' (allowed: whole, wikitext)"));
}

absl::StatusOr<std::vector<RollingDocument>> MakeRollingDocuments(
    const std::vector<std::string>& texts, const tok::Tokenizer& tokenizer,
    DocumentSplit split) {
  std::vector<RollingDocument> docs;
  for (const std::string& text : texts) {
    std::vector<std::string> pages;
    if (split == DocumentSplit::kWikiText) {
      pages = SplitWikiTextPages(text);
    } else {
      pages = {text};
    }
    for (const std::string& page : pages) {
      RollingDocument d;
      d.words = CountWords(page);
      d.bytes = static_cast<int64_t>(page.size());
      CARE_ASSIGN_OR_RETURN(d.ids,
                            tokenizer.Encode(split == DocumentSplit::kWikiText
                                                 ? WikiTextDetokenize(page)
                                                 : page));
      docs.push_back(std::move(d));
    }
  }
  return docs;
}

absl::StatusOr<std::vector<RollingDocument>> LoadRollingDocuments(
    const std::string& path, const tok::Tokenizer* tokenizer,
    const DocumentOptions& o) {
  std::vector<RollingDocument> docs;
  if (absl::EndsWith(path, ".u16") || absl::EndsWith(path, ".u32")) {
    RollingDocument d;
    CARE_ASSIGN_OR_RETURN(d.ids, data::ReadTokenFile(path));
    docs.push_back(std::move(d));
    return docs;
  }
  if (tokenizer == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": a text file needs the model's tokenizer"));
  }
  std::vector<std::string> texts;
  if (absl::EndsWith(path, ".jsonl")) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
    std::string line;
    int64_t line_no = 0;
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j =
          nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (!j.is_object() || !j.contains(o.text_field) ||
          !j.at(o.text_field).is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ":", line_no, ": field '", o.text_field,
                         "': missing or not a string"));
      }
      texts.push_back(j.at(o.text_field).get<std::string>());
    }
  } else {
    CARE_ASSIGN_OR_RETURN(std::string text, care::ReadFileToString(path));
    texts.push_back(std::move(text));
  }
  CARE_ASSIGN_OR_RETURN(docs, MakeRollingDocuments(texts, *tokenizer, o.split));
  if (o.max_documents > 0 &&
      static_cast<int64_t>(docs.size()) > o.max_documents) {
    docs.resize(o.max_documents);
  }
  if (docs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " has no documents"));
  }
  return docs;
}

}  // namespace care::eval
