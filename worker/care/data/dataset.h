// Dataset readers: text (.txt whole file; .jsonl with a text field, the
// documents joined by a separator) tokenized with the model's tokenizer, or
// pre-tokenized little-endian id files (.u16/.u32). See docs/datasets.md.
#ifndef CARE_DATA_DATASET_H_
#define CARE_DATA_DATASET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "care/tokenizer/tokenizer.h"

namespace care::data {

struct TextOptions {
  std::string text_field = "text";
  std::string separator = "\n\n";
};

// The text of a .txt or .jsonl file (errors: unreadable file, invalid UTF-8
// with its byte offset, a .jsonl line that is not an object or lacks the
// string field, with its 1-based line number; empty data).
absl::StatusOr<std::string> LoadText(const std::string& path,
                                     const TextOptions& options = {});

// A .u16 or .u32 little-endian id file (errors: size not a multiple of the id
// width, empty file).
absl::StatusOr<std::vector<int32_t>> ReadTokenFile(const std::string& path);

// Dispatches on the extension: .txt/.jsonl are read with LoadText and encoded
// with `tokenizer` as one string (no BOS/EOS); .u16/.u32 are read as ids, and
// checked against tokenizer->vocab_size() when a tokenizer is given.
absl::StatusOr<std::vector<int32_t>> LoadTokenStream(
    const std::string& path, const care::tok::Tokenizer* tokenizer,
    const TextOptions& options = {});

}  // namespace care::data

#endif  // CARE_DATA_DATASET_H_
