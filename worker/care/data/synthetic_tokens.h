// A synthetic token stream for demos and benchmarks on machines without real
// text: a seeded Markov chain over the vocabulary whose unigram frequencies
// are Zipf-like and whose bigrams are strongly predictable, so a model has
// something to calibrate on (anisotropic activations, learnable context).
#ifndef CARE_DATA_SYNTHETIC_TOKENS_H_
#define CARE_DATA_SYNTHETIC_TOKENS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace care::data {

struct SyntheticTokenOptions {
  int64_t vocab_size = 0;  // Ids are in [0, vocab_size).
  int64_t count = 0;       // Tokens in the stream.
  uint64_t seed = 0;
  int successors = 4;            // Preferred next tokens per token.
  double successor_prob = 0.75;  // Chance the next token is one of them.
  double zipf_exponent = 1.1;    // Otherwise drawn from Zipf(s) over ranks.
};

// Deterministic on every machine (SplitMix64, no std distributions).
absl::StatusOr<std::vector<int32_t>> SyntheticTokenStream(
    const SyntheticTokenOptions& options);

// Writes ids as a little-endian .u32 file (the format LoadTokenStream reads).
absl::Status WriteTokenFileU32(const std::string& path,
                               const std::vector<int32_t>& ids);

}  // namespace care::data

#endif  // CARE_DATA_SYNTHETIC_TOKENS_H_
