// The regex pre-tokenizers of byte-level BPE tokenizers (GPT-2, Llama-3,
// Qwen2/Qwen3), implemented by hand over Unicode classes. Each function
// reproduces the leftmost-first, greedy/backtracking semantics of the
// Oniguruma regex HF tokenizers runs, for exactly one pattern string.
#ifndef CARE_TOKENIZER_SPLIT_PATTERNS_H_
#define CARE_TOKENIZER_SPLIT_PATTERNS_H_

#include <cstddef>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace care::tok {

enum class SplitPattern { kGpt2, kLlama3, kQwen2 };

// The exact regex strings (as stored in tokenizer.json) that are recognised.
extern const char kGpt2Pattern[];
extern const char kLlama3Pattern[];
extern const char kQwen2Pattern[];

// Maps a tokenizer.json "Regex" string to a known pattern; nullopt if unknown.
std::optional<SplitPattern> RecognizeSplitPattern(absl::string_view regex);

// Split with behavior "Isolated": every match and every gap between matches
// becomes a piece. Returns [begin, end) code-point index ranges covering
// [0, n).
std::vector<std::pair<size_t, size_t>> SplitIsolated(
    const std::vector<char32_t>& cps, SplitPattern pattern);

}  // namespace care::tok

#endif  // CARE_TOKENIZER_SPLIT_PATTERNS_H_
