// Layer 1's attention (k/v) input of the tinyqwen3 fixture from the engine,
// on 96 calibration windows then 32 held-out windows of 32 tokens: the data
// the q/k norm fold, latent objective and latent refinement tests fit and
// measure on.
#ifndef CARE_TESTS_MLA_EXPORT_QWEN3_LAYER_INPUT_H_
#define CARE_TESTS_MLA_EXPORT_QWEN3_LAYER_INPUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/mla_export/latent_objective.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/io/model.h"
#include "care/io/tensor.h"

namespace care::convert::mla {

inline constexpr int64_t kLayer = 1;
inline constexpr int64_t kSeqLen = 32;
inline constexpr int64_t kCalWindows = 96, kHeldWindows = 32;

struct Qwen3LayerInput {
  io::Model model;
  MatrixRM x;  // [tokens, D] layer kLayer's k/v input, calibration first
  int64_t cal_tokens = 0;
};

// Loaded once per process; null when the fixture is missing or the forward
// fails.
const Qwen3LayerInput* LoadQwen3LayerInput();

// The fit's context for f's model (calibration windows of kSeqLen).
LayerFitContext Qwen3FitContext(const Qwen3LayerInput& f,
                                const MlaExportOptions& mla = {});

// The attention metric as the fit built it for `layer` (fitted on f's
// calibration rows): the layer's folded and NoPE-corrected q rows, its
// o_proj and the calibration covariance.
absl::StatusOr<AttentionMetric> FittedAttentionMetric(const Qwen3LayerInput& f,
                                                      const MlaLayer& layer);

}  // namespace care::convert::mla

#endif  // CARE_TESTS_MLA_EXPORT_QWEN3_LAYER_INPUT_H_
