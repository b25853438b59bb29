#include "care/engine/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace care::engine {

namespace {

// YaRN's dimension index at which a frequency completes `rotations` turns
// over `max_pos` positions.
double CorrectionDim(double rotations, int64_t dim, double base,
                     double max_pos) {
  return dim * std::log(max_pos / (rotations * 2 * std::numbers::pi)) /
         (2 * std::log(base));
}

// transformers' get_mscale(scale, mscale).
double YarnMscale(double factor, double mscale = 1.0) {
  return factor <= 1.0 ? 1.0 : 0.1 * mscale * std::log(factor) + 1.0;
}

}  // namespace

absl::StatusOr<RopeFrequencies> ComputeRopeFrequencies(
    const ModelConfig& config) {
  RopeFrequencies f;
  const double prf = config.partial_rotary_factor;
  if (!(prf > 0.0 && prf <= 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("partial_rotary_factor ", prf, " is outside (0, 1]"));
  }
  const int64_t dim = static_cast<int64_t>(config.head_dim * prf);
  if (dim <= 0 || dim % 2 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("rotary width head_dim * partial_rotary_factor = ", dim,
                     " must be even and positive"));
  }
  if (!(config.rope_theta > 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_theta ", config.rope_theta, " must be > 1"));
  }
  f.rotary_dim = dim;
  const double base = config.rope_theta;
  const int64_t half = dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) {
    inv[i] = 1.0 / std::pow(base, static_cast<double>(2 * i) / dim);
  }
  const RopeScaling& rs = config.rope_scaling;
  if (rs.type != RopeScalingType::kNone && !(rs.factor > 0.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rope_scaling.factor ", rs.factor, " must be > 0"));
  }
  const double orig_max = rs.original_max_position_embeddings > 0
                              ? rs.original_max_position_embeddings
                              : config.max_position_embeddings;
  switch (rs.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (double& v : inv) v /= rs.factor;
      break;
    case RopeScalingType::kLlama3: {
      if (!(orig_max > 0) || !(rs.high_freq_factor > rs.low_freq_factor)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "llama3 rope_scaling needs original_max_position_embeddings > 0 "
            "and high_freq_factor > low_freq_factor (got ",
            orig_max, ", ", rs.high_freq_factor, ", ", rs.low_freq_factor,
            ")"));
      }
      const double low_wavelen = orig_max / rs.low_freq_factor;
      const double high_wavelen = orig_max / rs.high_freq_factor;
      for (double& v : inv) {
        const double wavelen = 2 * std::numbers::pi / v;
        if (wavelen > low_wavelen) {
          v /= rs.factor;  // low frequencies: interpolate
        } else if (wavelen >= high_wavelen) {
          const double smooth = (orig_max / wavelen - rs.low_freq_factor) /
                                (rs.high_freq_factor - rs.low_freq_factor);
          v = (1 - smooth) * v / rs.factor + smooth * v;
        }  // high frequencies unchanged
      }
      break;
    }
    case RopeScalingType::kYarn: {
      if (!(orig_max > 0)) {
        return absl::InvalidArgumentError(
            "yarn rope_scaling needs original_max_position_embeddings (or "
            "max_position_embeddings) > 0");
      }
      double low = CorrectionDim(rs.beta_fast, dim, base, orig_max);
      double high = CorrectionDim(rs.beta_slow, dim, base, orig_max);
      if (rs.truncate) {
        low = std::floor(low);
        high = std::ceil(high);
      }
      low = std::max(low, 0.0);
      high = std::min(high, static_cast<double>(dim - 1));
      if (low == high) high += 0.001;
      for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((i - low) / (high - low), 0.0, 1.0);
        const double extrapolation = 1.0 - ramp;
        inv[i] =
            inv[i] / rs.factor * (1 - extrapolation) + inv[i] * extrapolation;
      }
      if (rs.attention_factor.has_value()) {
        f.attention_factor = *rs.attention_factor;
      } else if (rs.mscale != 0 && rs.mscale_all_dim != 0) {
        f.attention_factor = YarnMscale(rs.factor, rs.mscale) /
                             YarnMscale(rs.factor, rs.mscale_all_dim);
      } else {
        f.attention_factor = YarnMscale(rs.factor);
      }
      break;
    }
  }
  f.inv_freq = std::move(inv);
  return f;
}

RopeTable::RopeTable(const RopeFrequencies& freqs, int64_t seq_len)
    : seq_len_(seq_len), rotary_dim_(freqs.rotary_dim) {
  const int64_t half = rotary_dim_ / 2;
  cos_.resize(seq_len * half);
  sin_.resize(seq_len * half);
  for (int64_t p = 0; p < seq_len; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // Angles in double: p · inv_freq reaches 1e5 rad at long contexts.
      const double angle = static_cast<double>(p) * freqs.inv_freq[i];
      cos_[p * half + i] =
          static_cast<float>(std::cos(angle) * freqs.attention_factor);
      sin_[p * half + i] =
          static_cast<float>(std::sin(angle) * freqs.attention_factor);
    }
  }
}

}  // namespace care::engine
