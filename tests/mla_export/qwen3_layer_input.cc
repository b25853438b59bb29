#include "mla_export/qwen3_layer_input.h"

#include <utility>

#include "base/status_macros.h"
#include "care/convert/covariance.h"
#include "care/convert/mla_export/nope_correction.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/tensor_names.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert::mla {

LayerFitContext Qwen3FitContext(const Qwen3LayerInput& f,
                                const MlaExportOptions& mla) {
  LayerFitContext ctx;
  ctx.config = &f.model.config;
  ctx.weights = f.model.weights.get();
  ctx.mla = mla;
  ctx.calib_seq_len = kSeqLen;
  ctx.freqs = *engine::ComputeRopeFrequencies(f.model.config);
  return ctx;
}

const Qwen3LayerInput* LoadQwen3LayerInput() {
  static const Qwen3LayerInput* f = []() -> const Qwen3LayerInput* {
    auto model = io::OpenModel(::care::testing::FixturePath("tinyqwen3-hf"),
                               engine::Families());
    if (!model.ok()) return nullptr;
    auto* out =
        new Qwen3LayerInput{std::move(*model), {}, kCalWindows * kSeqLen};
    auto fwd = engine::LayerwiseForward::Create(
        out->model.config, *out->model.weights,
        testing::FirstWindows(kCalWindows + kHeldWindows, kSeqLen));
    if (!fwd.ok()) return nullptr;
    engine::LayerHooks hooks;
    hooks.on_kv_input = [&](int64_t l,
                            const compute::Matrix& xm) -> absl::Status {
      if (l != kLayer) return absl::OkStatus();
      auto x = engine::DownloadMatrix((*fwd)->backend(), xm);
      if (!x.ok()) return x.status();
      out->x = std::move(*x);
      return absl::OkStatus();
    };
    if (!(*fwd)->RunLayers(kLayer + 1, hooks).ok()) return nullptr;
    return out;
  }();
  return f;
}

absl::StatusOr<AttentionMetric> FittedAttentionMetric(const Qwen3LayerInput& f,
                                                      const MlaLayer& layer) {
  const ModelConfig& c = f.model.config;
  CARE_ASSIGN_OR_RETURN(Tensor q,
                        f.model.weights->LoadF32(io::names::QProj(kLayer)));
  CARE_ASSIGN_OR_RETURN(Tensor o,
                        f.model.weights->LoadF32(io::names::OProj(kLayer)));
  NopeCorrection nc;
  nc.m = layer.nope_correction;
  CovarianceAccumulator cal(f.x.cols());
  CARE_RETURN_IF_ERROR(cal.Add(f.x.topRows(f.cal_tokens)));
  return BuildAttentionMetric(
      CorrectedQueryProjection(nc, c.head_dim, FoldedQProj(q.matrix(), layer)),
      o.matrix(), cal.Covariance(), c.num_key_value_heads, c.head_dim);
}

}  // namespace care::convert::mla
