// The alternating latent fit (latent_refine.h) and its V metric, the
// attention-averaged inputs' moments (attended_inputs.h), on tinyqwen3's
// real layer-1 inputs: the moments against a direct per-query computation,
// and the refined latent against the joint factorization's on held-out
// windows under the refinement's own objective, so the test fails if the
// refinement were dropped or did nothing.
#include "care/convert/mla_export/latent_refine.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "care/convert/covariance.h"
#include "care/convert/latent_layer.h"
#include "care/convert/mla_export/attended_inputs.h"
#include "care/convert/mla_export/fit_layer.h"
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

TEST(AttendedInputsTest, MatchesPerQueryAverages) {
  CARE_REQUIRE_FIXTURES();
  const Fixture* f = Load();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  const ModelConfig& c = f->model.config;
  const int64_t dh = c.head_dim, n_h = c.num_attention_heads;
  const int64_t g = c.num_key_value_heads, group = n_h / g;
  auto q = f->model.weights->LoadF32(io::names::QProj(kLayer));
  auto w = LoadLayerWeights(c, *f->model.weights, kLayer);
  ASSERT_TRUE(q.ok() && w.ok());
  const MatrixRM wq = q->matrix();
  RopeSplit shape;
  shape.shape = {g, dh, 0, 1};
  NopeCorrectionInputs in;
  in.w_q = &wq;
  in.w_k = &w->w_k;
  in.rope = &shape;
  in.inv_freq = engine::ComputeRopeFrequencies(c)->inv_freq;
  in.num_heads = n_h;
  in.seq_len = kSeqLen;
  const MatrixRM x = f->x.topRows(2 * kSeqLen);  // two windows
  auto m = AttendedInputMoments(in, x);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(static_cast<int64_t>(m->size()), g);
  // Direct: per head and query, the source's causal softmax over the
  // rotated scores (complex-pair form of RoPE), then x̄ = Σ a·x.
  for (int64_t j = 0; j < g; ++j) {
    Eigen::MatrixXd ref = Eigen::MatrixXd::Zero(c.hidden_size, c.hidden_size);
    for (int64_t win = 0; win < 2; ++win) {
      for (int64_t h = j * group; h < (j + 1) * group; ++h) {
        for (int64_t p = 0; p < kSeqLen; ++p) {
          std::vector<double> s(p + 1);
          double mx = -1e300;
          for (int64_t t = 0; t <= p; ++t) {
            const auto xp = x.row(win * kSeqLen + p).cast<double>();
            const auto xt = x.row(win * kSeqLen + t).cast<double>();
            double dot = 0;
            for (int64_t i = 0; i < dh / 2; ++i) {
              // Rotation by the relative angle (p − t)·θ_i of pair i.
              const double qa = xp.dot(wq.row(h * dh + i).cast<double>());
              const double qb =
                  xp.dot(wq.row(h * dh + i + dh / 2).cast<double>());
              const double ka = xt.dot(w->w_k.col(j * dh + i).cast<double>());
              const double kb =
                  xt.dot(w->w_k.col(j * dh + i + dh / 2).cast<double>());
              const double ang = (p - t) * in.inv_freq[i];
              // Re((q_a + i·q_b)·conj(k_a + i·k_b)·e^{i·ang}).
              dot += std::cos(ang) * (qa * ka + qb * kb) -
                     std::sin(ang) * (qb * ka - qa * kb);
            }
            s[t] = dot / std::sqrt(static_cast<double>(dh));
            mx = std::max(mx, s[t]);
          }
          double z = 0;
          for (double& v : s) z += (v = std::exp(v - mx));
          Eigen::RowVectorXd xbar = Eigen::RowVectorXd::Zero(c.hidden_size);
          for (int64_t t = 0; t <= p; ++t) {
            xbar += (s[t] / z) * x.row(win * kSeqLen + t).cast<double>();
          }
          ref += xbar.transpose() * xbar;
        }
      }
    }
    ref /= static_cast<double>(group * 2 * kSeqLen);
    EXPECT_LT(((*m)[j] - ref).norm(), 1e-9 * ref.norm()) << "KV head " << j;
  }
}

// The refinement's objective f (latent_refine.h) of a fitted layer on the
// held-out windows: K_nope under their C with the query metric, V under
// their attended moments with the o_proj metric, β² from the same moments.
double HeldOutObjective(const Fixture& f, const MlaLayer& layer,
                        const NopeCorrectionInputs& in,
                        const AttentionMetric& metric) {
  const MatrixRM held = f.x.bottomRows(f.x.rows() - f.cal_tokens);
  CovarianceAccumulator acc(held.cols());
  EXPECT_TRUE(acc.Add(held).ok());
  const Eigen::MatrixXd c = acc.Covariance();
  auto cv = AttendedInputMoments(in, held);
  EXPECT_TRUE(cv.ok()) << cv.status();
  auto w = LoadLayerWeights(f.model.config, *f.model.weights, kLayer);
  EXPECT_TRUE(w.ok());
  const LayerWeights folded = FoldedWeights(*w, layer);
  const int64_t width = folded.w_k.cols(), dh = f.model.config.head_dim;
  const Eigen::MatrixXd nope =
      Eigen::MatrixXd::Identity(width, width) - layer.rope.Projector();
  const Eigen::MatrixXd wk = folded.w_k.cast<double>() * nope;
  const Eigen::MatrixXd wv = folded.w_v.cast<double>();
  const Eigen::MatrixXd a = layer.w_down.cast<double>();
  double ek = 0, ev = 0, fk = 0, fv = 0;
  for (int64_t j = 0; j < width / dh; ++j) {
    const auto ks = metric.key_sqrt.block(j * dh, j * dh, dh, dh);
    const auto vs = metric.value_sqrt.block(j * dh, j * dh, dh, dh);
    const Eigen::MatrixXd mk = ks * ks.transpose(), mv = vs * vs.transpose();
    const Eigen::MatrixXd tk = wk.middleCols(j * dh, dh);
    const Eigen::MatrixXd tv = wv.middleCols(j * dh, dh);
    const Eigen::MatrixXd dk =
        tk - a * layer.up_k.middleCols(j * dh, dh).cast<double>();
    const Eigen::MatrixXd dv =
        tv - a * layer.up_v.middleCols(j * dh, dh).cast<double>();
    ek += (tk.transpose() * c * tk * mk).trace();
    ev += (tv.transpose() * (*cv)[j] * tv * mv).trace();
    fk += (dk.transpose() * c * dk * mk).trace();
    fv += (dv.transpose() * (*cv)[j] * dv * mv).trace();
  }
  const double beta2 = ev / ek;
  return (beta2 * fk + fv) / (beta2 * ek + ev);
}

TEST(LatentRefineTest, LowersTheHeldOutObjectiveOnRealData) {
  CARE_REQUIRE_FIXTURES();
  const Fixture* f = Load();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  const ModelConfig& c = f->model.config;
  const LayerFitContext ctx = Qwen3FitContext(*f);
  // rope 8 of 32, kv_lora_rank 8: tinyqwen3's 87.5 % split (quality.md).
  // The same split with 4 rounds of refinement and without (what `auto`
  // scores side by side).
  auto r = FitLayerCandidates(ctx, {{8, 1, 8, 4}}, kLayer, f->x, f->cal_tokens);
  auto p = FitLayerCandidates(ctx, {{8, 1, 8, 0}}, kLayer, f->x, f->cal_tokens);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(p.ok()) << p.status();
  // The same split, folds and NoPE correction (the metric's q rows).
  const MlaLayer& lr = r->layers[0];
  const MlaLayer& lp = p->layers[0];
  ASSERT_TRUE(lr.rope.pe.isApprox(lp.rope.pe));
  EXPECT_FALSE(lr.w_down.isApprox(lp.w_down));

  auto q = f->model.weights->LoadF32(io::names::QProj(kLayer));
  auto w = LoadLayerWeights(c, *f->model.weights, kLayer);
  ASSERT_TRUE(q.ok() && w.ok());
  const MatrixRM wq_folded = FoldedQProj(q->matrix(), lr);
  auto metric = FittedAttentionMetric(*f, lr);
  ASSERT_TRUE(metric.ok()) << metric.status();
  const LayerWeights folded = FoldedWeights(*w, lr);
  RopeSplit shape;
  shape.shape = {c.num_key_value_heads, c.head_dim, 0, 1};
  NopeCorrectionInputs in;
  in.w_q = &wq_folded;
  in.w_k = &folded.w_k;
  in.rope = &shape;
  in.inv_freq = ctx.freqs.inv_freq;
  in.num_heads = c.num_attention_heads;
  // The fit's windows: the NoPE scale span (256 tokens, four held-out).
  in.seq_len = 256;
  const double e_refined = HeldOutObjective(*f, lr, in, *metric);
  const double e_plain = HeldOutObjective(*f, lp, in, *metric);
  // Measured 0.298 vs 0.308 (3.2 % lower). Both fits are deterministic;
  // a 1 % margin is far above float32 rounding (~1e-6 relative) and below
  // the measured gain.
  EXPECT_LT(e_refined, 0.99 * e_plain)
      << "refined " << e_refined << " plain " << e_plain;
}

}  // namespace
}  // namespace care::convert::mla
