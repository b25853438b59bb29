// One layer of the DeepSeek-V3 export fitted for every (rope_dim, freqfold,
// kv_lora_rank) candidate from the layer's k/v input (docs/conversion.md
// "DeepSeek-V3 layout"): the Qwen3 q/k norm fold, the rope split, the joint
// latent at the candidate's rank and at full rank ("partial RoPE only"),
// the bias channel, the NoPE correction and the per-layer report. The
// calibration pass (export_stages.cc) calls it at each layer's k/v input;
// the result is what the resume state saves per layer (mla_resume.h).
#ifndef CARE_CONVERT_MLA_EXPORT_FIT_LAYER_H_
#define CARE_CONVERT_MLA_EXPORT_FIT_LAYER_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "care/convert/factorize.h"
#include "care/convert/mla_export/mla_layer.h"
#include "care/convert/mla_export/mla_report.h"
#include "care/convert/mla_export/options.h"
#include "care/engine/rope.h"
#include "care/io/model_config.h"
#include "care/io/tensor_source.h"

namespace care::convert::mla {

struct CandidateShape {
  int64_t rope_dim = 0, freqfold = 0;
  int64_t kv_lora_rank = 0;  // written (the bias channel included)
  // Rounds of the latent refinement (options.h, latent_refine.h); 0: none.
  int64_t latent_refine = 0;
  // Refit o_proj to the export's attention (o_proj_refit.h).
  bool o_proj_refit = false;
};

// Whether `b` is `a` with the o_proj refit added (`auto`'s twin, listed
// right after it): the same fit and partial-RoPE-only layer, then the refit.
bool IsRefitTwin(const CandidateShape& a, const CandidateShape& b);

// One layer's fits, one entry per candidate.
struct CalibratedLayer {
  std::vector<MlaLayer> layers;     // at the candidate's kv_lora_rank
  std::vector<MlaLayer> rope_only;  // at full latent rank
  std::vector<MlaLayerReport> reports;
};

struct LayerFitContext {
  const ModelConfig* config = nullptr;
  const TensorSource* weights = nullptr;
  FactorizeOptions factorize;
  MlaExportOptions mla;
  engine::RopeFrequencies freqs;  // the source's
  int64_t calib_seq_len = 0;      // of the calibration windows
};

// Whether Qwen3's q/k norms get the regression fold (qk_norm_fold.h):
// `--qk-norm-fold`, with auto meaning the data-aware methods (not svd).
bool UsesRegressionFold(const MlaExportOptions& options, Method method,
                        bool attention_bias);

// x [tokens, D]: layer l's k/v input, the first cal_tokens rows from the
// calibration windows, the rest held out (the per-layer report's held-out
// errors). Errors name the layer.
absl::StatusOr<CalibratedLayer> FitLayerCandidates(
    const LayerFitContext& ctx, const std::vector<CandidateShape>& candidates,
    int64_t l, const Eigen::Ref<const MatrixRM>& x, int64_t cal_tokens);

}  // namespace care::convert::mla

#endif  // CARE_CONVERT_MLA_EXPORT_FIT_LAYER_H_
