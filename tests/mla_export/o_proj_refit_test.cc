// The o_proj refit (o_proj_refit.h) on tinyqwen3's real layer-1 inputs at
// its 87.5 % split (rope 8 / freqfold 1, kv_lora_rank 8): the refit is the
// ridge regression's solution (its fit error against a double-precision
// least-squares solve of the same data), it lowers the held-out error the
// report gives, the `auto` twin shares the fit, and the export's tensor set
// serves the refitted o_proj.
#include "care/convert/mla_export/o_proj_refit.h"

#include <gtest/gtest.h>

#include <Eigen/QR>
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "care/convert/mla_export/fit_layer.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/convert/mla_export/mla_tensors.h"
#include "care/io/tensor_names.h"
#include "mla_export/qwen3_layer_input.h"
#include "support/fixtures.h"

namespace care::convert::mla {
namespace {

constexpr int64_t kWindow = 256;  // 8 calibration windows renumbered

TEST(OProjRefitTest, RefitIsTheRegressionAndLowersTheHeldOutError) {
  CARE_REQUIRE_FIXTURES();
  const Qwen3LayerInput* f = LoadQwen3LayerInput();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  const ModelConfig& c = f->model.config;
  const int64_t n_h = c.num_attention_heads, hd = n_h * c.head_dim;
  // What `auto` fits for one split: the plain candidate, then its twin.
  CandidateShape plain{8, 1, 8, 0, false}, refit = plain;
  refit.o_proj_refit = true;
  auto fits = FitLayerCandidates(Qwen3FitContext(*f), {plain, refit}, kLayer,
                                 f->x, f->cal_tokens);
  ASSERT_TRUE(fits.ok()) << fits.status();
  ASSERT_EQ(fits->layers.size(), 2u);
  const MlaLayer& a = fits->layers[0];
  const MlaLayer& b = fits->layers[1];
  EXPECT_EQ(a.o_proj.size(), 0);
  ASSERT_EQ(b.o_proj.rows(), c.hidden_size);
  ASSERT_EQ(b.o_proj.cols(), hd);
  EXPECT_TRUE(b.w_down == a.w_down && b.up_k == a.up_k && b.up_v == a.up_v);
  const MlaLayerReport& ra = fits->reports[0];
  const MlaLayerReport& rb = fits->reports[1];
  EXPECT_FALSE(ra.o_proj_refit);
  EXPECT_TRUE(rb.o_proj_refit);
  // Measured 0.713 -> 0.693 (λ = 10) on these held-out windows (3072
  // calibration tokens: the unregularised fit, 0.713, would not have been
  // kept); the
  // source's o_proj itself (λ → ∞) would give no gain at all.
  EXPECT_GT(rb.o_proj_error_before, 0.05);
  EXPECT_LT(rb.o_proj_error_after, 0.99 * rb.o_proj_error_before);

  // Independently of the refit's float Gram: the ridge problem as least
  // squares on the stacked system [Z; √λ·I]·Wᵀ ≈ [Y; √λ·W_oᵀ], solved in
  // double by Householder QR on the stacked matrix itself.
  const int64_t cal = f->cal_tokens / kWindow * kWindow;
  const int64_t held = (f->x.rows() - f->cal_tokens) / kWindow * kWindow;
  const auto x_fit = f->x.topRows(cal);
  const auto x_held = f->x.middleRows(f->cal_tokens, held);
  auto t =
      PrepareOProjRefit(c, *f->model.weights, kLayer, kWindow, x_fit, x_held);
  ASSERT_TRUE(t.ok()) << t.status();
  auto q = f->model.weights->LoadF32(io::names::QProj(kLayer));
  auto w = LoadLayerWeights(c, *f->model.weights, kLayer);
  ASSERT_TRUE(q.ok() && w.ok());
  auto r = RefitOProj(*t, x_fit, x_held, kLayer, a, *q, *w, n_h);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->o_proj == b.o_proj);  // what the fit kept
  EXPECT_NEAR(r->heldout_after, rb.o_proj_error_after, 1e-12);
  HealAttention<float> attn;
  attn.shape = {n_h, c.head_dim, 8, 8, c.hidden_size};
  attn.seq_len = kWindow;
  attn.cos.resize(kWindow, 4);
  attn.sin.resize(kWindow, 4);
  for (int64_t p = 0; p < kWindow; ++p) {
    for (int64_t i = 0; i < 4; ++i) {
      const double angle = p * t->source.inv_freq[i];
      attn.cos(p, i) = static_cast<float>(std::cos(angle));
      attn.sin(p, i) = static_cast<float>(std::sin(angle));
    }
  }
  attn.scale = static_cast<float>(1.0 / std::sqrt(c.head_dim + 8.0));
  attn.o_proj = t->source.w_o;
  auto p = HealStart(kLayer, a, *q, *w, n_h);
  ASSERT_TRUE(p.ok()) << p.status();
  auto z = HealHeadOutputs<float>(attn, *p, x_fit);
  ASSERT_TRUE(z.ok()) << z.status();
  const Eigen::MatrixXd zd = z->cast<double>();
  const Eigen::MatrixXd yd = t->y_fit.cast<double>();
  const Eigen::MatrixXd w0 = t->source.w_o.cast<double>().transpose();
  ASSERT_GT(r->ridge, 0);
  Eigen::MatrixXd stacked(zd.rows() + hd, hd), rhs(zd.rows() + hd, yd.cols());
  stacked << zd, std::sqrt(r->ridge) * Eigen::MatrixXd::Identity(hd, hd);
  rhs << yd, std::sqrt(r->ridge) * w0;
  const Eigen::MatrixXd ridge = stacked.colPivHouseholderQr().solve(rhs);
  const Eigen::MatrixXd got = b.o_proj.cast<double>().transpose();
  EXPECT_LT((got - ridge).norm(), 1e-3 * ridge.norm());
  // On the fit windows the refit beats the source's o_proj.
  EXPECT_LT((zd * got - yd).squaredNorm(), (zd * w0 - yd).squaredNorm());

  // The export's tensor set: o_proj of this layer is the refit, computed
  // (so the writer stores it, not the source's bytes), listed once.
  std::vector<MlaLayer> layers(c.num_hidden_layers, a);
  layers[kLayer] = b;
  const MlaTensorSource source(*f->model.weights, c, layers);
  const std::string name = io::names::OProj(kLayer);
  EXPECT_TRUE(source.IsComputed(name));
  EXPECT_FALSE(source.IsComputed(io::names::OProj(0)));
  auto served = source.LoadF32(name);
  ASSERT_TRUE(served.ok()) << served.status();
  EXPECT_TRUE(served->matrix() == b.o_proj);
  const std::vector<std::string> names = source.Names();
  EXPECT_EQ(std::count(names.begin(), names.end(), name), 1);
  EXPECT_NE(source.Location(name).find("o_proj refit"), std::string::npos);
}

TEST(OProjRefitTest, ClearErrors) {
  CARE_REQUIRE_FIXTURES();
  const Qwen3LayerInput* f = LoadQwen3LayerInput();
  ASSERT_NE(f, nullptr) << "tinyqwen3-hf fixture";
  const ModelConfig& c = f->model.config;
  // Rows that are not whole windows.
  auto t = PrepareOProjRefit(c, *f->model.weights, kLayer, kWindow,
                             f->x.topRows(kWindow + 1), f->x.topRows(0));
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("whole windows of 256"),
            std::string::npos)
      << t.status();
  // A bias channel (Qwen2) has no image in the refit's attention.
  auto fits = FitLayerCandidates(Qwen3FitContext(*f), {{8, 1, 8, 0, false}},
                                 kLayer, f->x, f->cal_tokens);
  ASSERT_TRUE(fits.ok()) << fits.status();
  MlaLayer layer = fits->layers[0];
  layer.bias_channel = true;
  t = PrepareOProjRefit(c, *f->model.weights, kLayer, kWindow,
                        f->x.topRows(kWindow), f->x.topRows(0));
  ASSERT_TRUE(t.ok()) << t.status();
  auto q = f->model.weights->LoadF32(io::names::QProj(kLayer));
  auto w = LoadLayerWeights(c, *f->model.weights, kLayer);
  ASSERT_TRUE(q.ok() && w.ok());
  auto r = RefitOProj(*t, f->x.topRows(kWindow), f->x.topRows(0), kLayer, layer,
                      *q, *w, c.num_attention_heads);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("bias"), std::string::npos);
  // Inputs other than the targets were prepared with.
  r = RefitOProj(*t, f->x.topRows(2 * kWindow), f->x.topRows(0), kLayer,
                 fits->layers[0], *q, *w, c.num_attention_heads);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("inputs of 512 and 0 rows for targets "
                                      "of 256 and 0"),
            std::string::npos)
      << r.status();
}

}  // namespace
}  // namespace care::convert::mla
