// The DeepSeek-V3 export's attention objective (latent_objective.h) and NoPE
// score scale (nope_scale.h) on real data: tinyqwen3's layer-1 k/v inputs
// from the engine, calibration windows from the start of the token stream
// and held-out windows after them. Each test compares with the objective
// switched off, on the held-out tokens, so it fails if the weighting (or the
// scale) were dropped or did nothing.
#include "care/convert/mla_export/latent_objective.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "care/convert/covariance.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/mla_export/nope_scale.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "convert/pipeline_test_util.h"
#include "mla_export/qwen3_layer_input.h"
#include "support/fixtures.h"

namespace care::convert::mla {
namespace {

using Fixture = Qwen3LayerInput;
const Fixture* Load() { return LoadQwen3LayerInput(); }

Eigen::MatrixXd HeldCovariance(const Fixture& f) {
  CovarianceAccumulator acc(f.x.cols());
  EXPECT_TRUE(acc.Add(f.x.bottomRows(f.x.rows() - f.cal_tokens)).ok());
  return acc.Covariance();
}

// The attention objective's own measure of a fitted layer on held-out
// tokens: the query-weighted K_nope error plus the o_proj-weighted V error,
// each relative to its weighted energy (so neither half's units dominate).
double WeightedError(const Fixture& f, const MlaLayer& layer,
                     const AttentionMetric& metric, const Eigen::MatrixXd& c) {
  auto w = LoadLayerWeights(f.model.config, *f.model.weights, kLayer);
  EXPECT_TRUE(w.ok()) << w.status();
  const LayerWeights folded = FoldedWeights(*w, layer);
  const int64_t width = folded.w_k.cols();
  const Eigen::MatrixXd nope =
      Eigen::MatrixXd::Identity(width, width) - layer.rope.Projector();
  const Eigen::MatrixXd wk = folded.w_k.cast<double>() * nope;  // [D, g·d_h]
  const Eigen::MatrixXd wv = folded.w_v.cast<double>();
  const Eigen::MatrixXd down = layer.w_down.cast<double>();
  auto rel = [&](const Eigen::MatrixXd& target, const Eigen::MatrixXd& up,
                 const Eigen::MatrixXd& weight) {
    const Eigen::MatrixXd e = (target - down * up) * weight;
    const Eigen::MatrixXd t = target * weight;
    return (e.transpose() * c * e).trace() / (t.transpose() * c * t).trace();
  };
  return rel(wk, layer.up_k.cast<double>(), metric.key_sqrt) +
         rel(wv, layer.up_v.cast<double>(), metric.value_sqrt);
}

TEST(LatentObjectiveTest, AttentionObjectiveLowersWeightedHeldOutError) {
  CARE_REQUIRE_FIXTURES();
  const Fixture* f = Load();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  // rope 8 of 32, kv_lora_rank 8: tinyqwen3's 87.5 % split (quality.md).
  const std::vector<CandidateShape> shapes = {{8, 1, 8}};
  MlaExportOptions attention, activation;
  attention.latent_objective = LatentObjective::kAttention;
  activation.latent_objective = LatentObjective::kActivation;
  auto a = FitLayerCandidates(Qwen3FitContext(*f, attention), shapes, kLayer,
                              f->x, f->cal_tokens);
  auto p = FitLayerCandidates(Qwen3FitContext(*f, activation), shapes, kLayer,
                              f->x, f->cal_tokens);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(p.ok()) << p.status();
  // The same NoPE correction and split in both (only the latent differs).
  ASSERT_EQ(a->layers[0].nope_correction.size(),
            p->layers[0].nope_correction.size());
  EXPECT_TRUE(a->layers[0].rope.pe.isApprox(p->layers[0].rope.pe));

  // The metric as the attention fit built it: the corrected, folded q rows
  // and o_proj of the layer.
  auto metric = FittedAttentionMetric(*f, a->layers[0]);
  ASSERT_TRUE(metric.ok()) << metric.status();

  const Eigen::MatrixXd held = HeldCovariance(*f);
  const double e_attention = WeightedError(*f, a->layers[0], *metric, held);
  const double e_activation = WeightedError(*f, p->layers[0], *metric, held);
  // Measured 0.546 vs 0.634 (a rank-8 latent of a 128-wide [K_nope; V]);
  // a 5 % margin is far above the float32 factors' rounding (~1e-6) and
  // below the measured 14 %.
  EXPECT_LT(e_attention, 0.95 * e_activation)
      << "attention " << e_attention << " activation " << e_activation;
  // And the activation objective wins its own (unweighted) measure: the
  // two objectives really differ.
  const AttentionMetric identity{
      Eigen::MatrixXd::Identity(metric->key_sqrt.rows(),
                                metric->key_sqrt.cols()),
      Eigen::MatrixXd::Identity(metric->value_sqrt.rows(),
                                metric->value_sqrt.cols())};
  EXPECT_LT(WeightedError(*f, p->layers[0], identity, held),
            WeightedError(*f, a->layers[0], identity, held));
}

TEST(LatentObjectiveTest, FullRankStaysExact) {
  CARE_REQUIRE_FIXTURES();
  const Fixture* f = Load();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  MlaExportOptions attention;
  auto a = FitLayerCandidates(Qwen3FitContext(*f, attention), {{8, 1, 8}},
                              kLayer, f->x, f->cal_tokens);
  ASSERT_TRUE(a.ok()) << a.status();
  // "Partial RoPE only" (full latent rank) reproduces K and V: the
  // regression up-projections need no inverse of the metric.
  const MlaLayer& full = a->rope_only[0];
  const Eigen::MatrixXd held = HeldCovariance(*f);
  auto w = LoadLayerWeights(f->model.config, *f->model.weights, kLayer);
  ASSERT_TRUE(w.ok());
  const KvErrors e = RelativeErrors(full, FoldedWeights(*w, full), held);
  // float32 factors of a 192-wide layer: ~1e-12 in the squared error.
  EXPECT_LT(e.k, 1e-8);
  EXPECT_LT(e.v, 1e-8);
}

TEST(NopeScaleTest, LowersHeldOutAttentionKlOnRealData) {
  CARE_REQUIRE_FIXTURES();
  const Fixture* f = Load();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  const ModelConfig& config = f->model.config;
  auto w = LoadLayerWeights(config, *f->model.weights, kLayer);
  auto q = f->model.weights->LoadF32(io::names::QProj(kLayer));
  ASSERT_TRUE(w.ok() && q.ok());
  // No q/k norm fold here: the scale is a statement about the scores of the
  // given projections, whatever they are.
  const MatrixRM wq = q->matrix();
  CovarianceAccumulator cal(f->x.cols());
  ASSERT_TRUE(cal.Add(f->x.topRows(f->cal_tokens)).ok());
  const Eigen::MatrixXd wk = w->w_k.cast<double>();
  auto split = SplitRope(wk.transpose() * cal.Covariance() * wk,
                         {config.num_key_value_heads, config.head_dim, 8, 1});
  ASSERT_TRUE(split.ok()) << split.status();
  NopeCorrectionInputs in;
  in.w_q = &wq;
  in.w_k = &w->w_k;
  in.rope = &*split;
  in.inv_freq = engine::ComputeRopeFrequencies(config)->inv_freq;
  in.num_heads = config.num_attention_heads;
  in.seq_len = kSeqLen;
  auto nc = FitNopeCorrection(in, f->x.topRows(f->cal_tokens));
  ASSERT_TRUE(nc.ok()) << nc.status();
  // Fit on 256-token windows of the calibration rows (consecutive ids);
  // check on the held-out rows, 4 windows of 256 after them.
  NopeCorrectionInputs long_in = in;
  long_in.seq_len = NopeScaleWindow(256, config.max_position_embeddings,
                                    kSeqLen, f->cal_tokens);
  ASSERT_EQ(long_in.seq_len, 256);
  auto scale = FitNopeScale(long_in, nc->m, f->x.topRows(f->cal_tokens));
  ASSERT_TRUE(scale.ok()) << scale.status();
  EXPECT_LT(scale->kl_scaled, scale->kl_unscaled);
  double min_gamma = kMaxNopeScale;
  for (double g : scale->gamma) min_gamma = std::min(min_gamma, g);
  // The unrotated NoPE score is over-trusted: measured γ down to 0.34.
  EXPECT_LT(min_gamma, 0.9);

  std::vector<Eigen::Matrix2d> scaled = nc->m;
  ApplyNopeScale(*scale, config.head_dim, scaled);
  const auto held = f->x.bottomRows(f->x.rows() - f->cal_tokens);
  // KL at γ = 1 of each map set = the held-out KL of that map set.
  auto before = FitNopeScale(long_in, nc->m, held);
  auto after = FitNopeScale(long_in, scaled, held);
  ASSERT_TRUE(before.ok() && after.ok());
  // Measured 0.352 -> 0.230 (calibration 0.356 -> 0.243): the held-out
  // gain matches the fitted one, so 5 % is a safe margin.
  EXPECT_LT(after->kl_unscaled, 0.95 * before->kl_unscaled)
      << "held-out KL " << after->kl_unscaled << " vs " << before->kl_unscaled;
}

TEST(NopeScaleTest, WindowIsWholeCalibrationWindowsWithinTheModel) {
  EXPECT_EQ(NopeScaleWindow(256, 512, 32, 8192), 256);
  EXPECT_EQ(NopeScaleWindow(256, 100, 32, 8192), 96);  // model positions
  EXPECT_EQ(NopeScaleWindow(256, 512, 32, 64), 64);    // few tokens
  EXPECT_EQ(NopeScaleWindow(10, 512, 32, 8192), 32);   // at least one
}

}  // namespace
}  // namespace care::convert::mla
