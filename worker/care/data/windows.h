// Calibration windows (seeded random contiguous windows) and evaluation
// windows (consecutive, non-overlapping) over a token stream, each confined
// to a token range so calibration and evaluation can be kept disjoint.
// See docs/datasets.md.
#ifndef CARE_DATA_WINDOWS_H_
#define CARE_DATA_WINDOWS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace care::data {

// Token range [begin, end) of a stream used by a sampler/chunker.
struct TokenRange {
  int64_t begin = 0;
  int64_t end = -1;  // -1 = stream end.
};
struct Window {
  int64_t start;   // Stream offset of the first token.
  int64_t length;  // Tokens.
};

// The range with end = -1 replaced by stream_size; InvalidArgument unless
// 0 <= begin < end <= stream_size.
absl::StatusOr<TokenRange> ResolveRange(int64_t stream_size, TokenRange range);

// [floor(begin_fraction * N), floor(end_fraction * N)) with
// 0 <= begin_fraction < end_fraction <= 1.
absl::StatusOr<TokenRange> RangeFromFractions(int64_t stream_size,
                                              double begin_fraction,
                                              double end_fraction);

// The PRNG of the sampler: splitmix64 (Steele, Lea, Flood 2014), specified
// here so that windows are identical on every machine and compiler.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound), bound > 0, by rejection (no modulo bias).
  uint64_t Below(uint64_t bound);

 private:
  uint64_t state_;
};

// `samples` windows of `seq_len` tokens; window i starts at
// begin + Below(end - begin - seq_len + 1) drawn in order from
// SplitMix64(seed). Windows are drawn with replacement and may overlap each
// other; every token they cover lies in [begin, end).
absl::StatusOr<std::vector<Window>> SampleCalibrationWindows(
    int64_t stream_size, int64_t samples, int64_t seq_len, uint64_t seed,
    TokenRange range = {});

// Windows [begin + w*T, begin + (w+1)*T) for w < floor((end-begin)/T), at
// most max_windows of them (0 = all). The tail shorter than T is unused.
absl::StatusOr<std::vector<Window>> ChunkEvaluationWindows(
    int64_t stream_size, int64_t seq_len, int64_t max_windows,
    TokenRange range = {});

// The ids of the windows as a row-major [windows, seq_len] matrix; all
// windows must have the same length and lie inside the stream.
absl::StatusOr<std::vector<int32_t>> MaterializeWindows(
    const std::vector<int32_t>& stream, const std::vector<Window>& windows);

}  // namespace care::data

#endif  // CARE_DATA_WINDOWS_H_
