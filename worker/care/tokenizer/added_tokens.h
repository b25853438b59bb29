// Added/special tokens of tokenizer.json, matched in the text before the
// normalizer/pre-tokenizer/model run: leftmost, longest match first, with
// HF's lstrip/rstrip (absorb adjacent White_Space) and single_word (no word
// character on either side) options.
#ifndef CARE_TOKENIZER_ADDED_TOKENS_H_
#define CARE_TOKENIZER_ADDED_TOKENS_H_

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace care::tok {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

// A piece of text: either an added token (id >= 0) or text to tokenize.
struct Segment {
  absl::string_view text;  // Points into the matched string.
  int32_t token_id = -1;
  size_t offset = 0;  // Byte offset in the matched string.
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `contents[i]` is what to look for (possibly normalized) for tokens[i].
  AddedTokenMatcher(std::vector<AddedToken> tokens,
                    std::vector<std::string> contents);
  bool empty() const { return tokens_.empty(); }
  // Splits `text` into token and text segments (empty text segments are
  // omitted).
  std::vector<Segment> Split(absl::string_view text) const;

 private:
  std::vector<AddedToken> tokens_;
  std::vector<std::string> contents_;
  // Candidate token indices per first byte, longest content first.
  std::array<std::vector<int32_t>, 256> by_first_byte_;
};

}  // namespace care::tok

#endif  // CARE_TOKENIZER_ADDED_TOKENS_H_
