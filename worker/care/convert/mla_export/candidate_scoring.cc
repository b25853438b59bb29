#include "care/convert/mla_export/candidate_scoring.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/families.h"

namespace care::convert::mla {

CandidateScorer::~CandidateScorer() = default;

absl::Status CandidateScorer::Open(const ModelConfig& source,
                                   const TensorSource& weights,
                                   MlaLayer placeholder,
                                   const engine::TokenWindows& windows,
                                   const engine::EngineOptions& engine,
                                   const ExportMetadata& meta, Variant& v) {
  v.layers.assign(source.num_hidden_layers, std::move(placeholder));
  CARE_ASSIGN_OR_RETURN(nlohmann::json j,
                        ExportConfigJson(source, v.layers, meta));
  CARE_ASSIGN_OR_RETURN(
      v.config, ParseModelConfig(j.dump(), "deepseek-v3 candidate config.json",
                                 engine::Families()));
  v.source = std::make_unique<MlaTensorSource>(weights, source, v.layers);
  CARE_ASSIGN_OR_RETURN(v.forward, engine::LayerwiseForward::Create(
                                       v.config, *v.source, windows, engine));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CandidateScorer>> CandidateScorer::Create(
    const ModelConfig& source, const TensorSource& weights,
    const std::vector<CandidateShape>& candidates,
    const engine::TokenWindows& windows, engine::EngineOptions engine,
    const ExportMetadata& meta) {
  // Layer l+1 is fitted only after layer l ran: nothing may load ahead.
  engine.prefetch_weights = false;
  std::unique_ptr<CandidateScorer> s(new CandidateScorer());
  const int64_t bias = source.attention_bias ? 1 : 0;
  const int64_t full_rank =
      std::min<int64_t>(source.hidden_size, 2 * source.kv_width());
  for (size_t i = 0; i < candidates.size(); ++i) {
    const CandidateShape& c = candidates[i];
    // A shape-only layer: what the config and tensor shapes read.
    MlaLayer ph;
    ph.rope.shape = {source.num_key_value_heads, source.head_dim, c.rope_dim,
                     c.freqfold};
    ph.bias_channel = bias > 0;
    ph.q_scale = std::sqrt(static_cast<double>(source.head_dim + c.rope_dim) /
                           static_cast<double>(source.head_dim));
    ph.w_down = MatrixRM(0, c.kv_lora_rank - bias);
    auto conv = std::make_unique<Variant>();
    CARE_RETURN_IF_ERROR(
        Open(source, weights, ph, windows, engine, meta, *conv));
    s->export_.push_back(std::move(conv));
    if (i > 0 && IsRefitTwin(candidates[i - 1], c)) {
      s->rope_only_.push_back(nullptr);
      s->rope_of_.push_back(s->rope_of_.back());
      continue;
    }
    ph.w_down = MatrixRM(0, full_rank);
    auto rope = std::make_unique<Variant>();
    CARE_RETURN_IF_ERROR(
        Open(source, weights, ph, windows, engine, meta, *rope));
    s->rope_only_.push_back(std::move(rope));
    s->rope_of_.push_back(i);
  }
  return s;
}

absl::Status CandidateScorer::Run(Variant& v, int64_t l,
                                  const MlaLayer& layer) {
  if (v.forward->next_layer() != l) {
    return absl::InternalError(absl::StrCat("candidate scoring: layer ", l,
                                            " added, forward expects ",
                                            v.forward->next_layer()));
  }
  MlaLayer placeholder;
  placeholder.rope.shape = layer.rope.shape;
  placeholder.bias_channel = layer.bias_channel;
  placeholder.q_scale = layer.q_scale;
  placeholder.w_down = MatrixRM(0, layer.fitted_rank());
  v.layers[l] = layer;
  absl::Status s = v.forward->RunLayer();
  v.layers[l] = std::move(placeholder);  // dropped: the forward is past it
  v.source->ReleaseCache();
  return s;
}

absl::Status CandidateScorer::AddLayer(int64_t l, const CalibratedLayer& fits) {
  if (fits.layers.size() != export_.size() ||
      fits.rope_only.size() != export_.size()) {
    return absl::InternalError(
        absl::StrCat("candidate scoring: ", fits.layers.size(), " fits for ",
                     export_.size(), " candidates"));
  }
  for (size_t i = 0; i < export_.size(); ++i) {
    CARE_RETURN_IF_ERROR(Run(*export_[i], l, fits.layers[i]));
    if (rope_only_[i]) {
      CARE_RETURN_IF_ERROR(Run(*rope_only_[i], l, fits.rope_only[i]));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<CandidateScore>> CandidateScorer::Scores(
    const std::vector<int32_t>& targets) {
  std::vector<double> rope(export_.size(), 0);
  for (size_t i = 0; i < rope_only_.size(); ++i) {
    if (!rope_only_[i]) continue;
    CARE_ASSIGN_OR_RETURN(engine::NllSum b,
                          rope_only_[i]->forward->ScoreTargets(targets));
    rope[i] = b.mean();
  }
  std::vector<CandidateScore> out;
  for (size_t i = 0; i < export_.size(); ++i) {
    CARE_ASSIGN_OR_RETURN(engine::NllSum a,
                          export_[i]->forward->ScoreTargets(targets));
    out.push_back({a.mean(), rope[rope_of_[i]]});
  }
  return out;
}

}  // namespace care::convert::mla
