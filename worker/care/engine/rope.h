// Rotary position embedding in the HF rotate_half convention: for a head
// vector x and rotary width r (= d_h * partial_rotary_factor, even), the
// first r entries become x·cos + rotate_half(x)·sin with
// rotate_half(x) = [-x[r/2:r], x[0:r/2]] and angle(p, i) = p · inv_freq[i mod
// r/2]; entries r..d_h-1 pass through. Scalings: default, linear, llama3 and
// yarn, computed like transformers' modeling_rope_utils.
#ifndef CARE_ENGINE_ROPE_H_
#define CARE_ENGINE_ROPE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"

namespace care::engine {

struct RopeFrequencies {
  std::vector<double> inv_freq;   // [rotary_dim / 2]
  double attention_factor = 1.0;  // multiplies cos and sin (yarn mscale)
  int64_t rotary_dim = 0;
};

// InvalidArgument when the rotary width is odd or zero, or a scaling
// parameter is out of range (names the field).
absl::StatusOr<RopeFrequencies> ComputeRopeFrequencies(
    const ModelConfig& config);

// cos/sin tables for positions 0..seq_len-1, [seq_len, rotary_dim / 2] each
// (already multiplied by the attention factor).
class RopeTable {
 public:
  RopeTable(const RopeFrequencies& freqs, int64_t seq_len);

  // Host tables, [seq_len, rotary_dim / 2] row-major each; the engine
  // uploads them once and applies them with compute::Backend::ApplyRope.
  const std::vector<float>& cos() const { return cos_; }
  const std::vector<float>& sin() const { return sin_; }

  int64_t seq_len() const { return seq_len_; }
  int64_t rotary_dim() const { return rotary_dim_; }

 private:
  int64_t seq_len_, rotary_dim_;
  std::vector<float> cos_, sin_;  // [seq_len, rotary_dim / 2]
};

}  // namespace care::engine

#endif  // CARE_ENGINE_ROPE_H_
