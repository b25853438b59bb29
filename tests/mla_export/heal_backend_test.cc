// Healing on compute::Backend (heal_backend.h) against the float64 Eigen
// reference (HealLoss<double>, whose gradient heal_layer_test.cc checks
// against central differences) and the float Adam loop (HealLayer<float>),
// on every backend that opens: cpu always; cuda when a device opens (else
// skipped with the reason, a failure under CARE_TEST_EXPECT_GPU=1).
//
// Tolerances. The backend computes in fp32 (cpu: Eigen; cuda: fp32 cuBLAS
// without TF32 and fp32 SIMT attention). Every quantity is a chain of a few
// GEMMs with inner sums of <= a few hundred O(1) terms and a softmax, so
// each entry carries a relative rounding error of ~1e-6 of the magnitudes
// summed; the gradient entries are sums of such products over all N rows
// and can be much smaller than the largest one through cancellation, so the
// bound is relative to the block's largest entry: 2e-4 (measured on cpu:
// <= 2.3e-6, the fixture layer's the largest), while a missing term, wrong sign
// of the inverse rotation, wrong head block or transposed product is off by
// O(0.1..1) of that scale. The loss (a sum of N·D squares, each a difference of
// O(1) values) must agree to 1e-5 relative (measured <= 3e-8).
#include "care/convert/mla_export/heal_backend.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <string>

#include "care/convert/covariance.h"
#include "care/convert/mla_export/gqa_attention.h"
#include "care/convert/mla_export/heal_layer.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "compute/backend_test_util.h"
#include "convert/pipeline_test_util.h"
#include "mla_export/heal_test_util.h"
#include "support/fixtures.h"

namespace care::convert::mla {
namespace {

using MF = HealMatrix<float>;
using MD = HealMatrix<double>;

constexpr auto* Gaussian = &testing::Gaussian<float>;
constexpr auto* Attention = &testing::RandomAttention<float>;
constexpr auto* Params = &testing::RandomParams<float>;

HealAttention<double> ToDouble(const HealAttention<float>& a) {
  HealAttention<double> d;
  d.shape = a.shape;
  d.seq_len = a.seq_len;
  d.cos = a.cos.cast<double>();
  d.sin = a.sin.cast<double>();
  d.scale = a.scale;
  d.o_proj = a.o_proj.cast<double>();
  return d;
}

HealParams<double> ToDouble(const HealParams<float>& p) {
  HealParams<double> d;
  for (int b = 0; b < HealParams<float>::kBlocks; ++b) {
    d.block(b) = p.block(b).cast<double>();
  }
  return d;
}

class HealBackendTest : public compute::testing::BackendTest {
 protected:
  // Loss and gradient of the backend against HealLoss<double> on the same
  // (float) values; see the file comment for the bounds.
  void ExpectMatchesReference(const HealAttention<float>& a,
                              const HealParams<float>& p, const MF& x,
                              const MF& y) {
    HealParams<float> g;
    absl::StatusOr<double> loss = HealLossOnBackend(*be_, a, p, x, y, &g);
    ASSERT_TRUE(loss.ok()) << loss.status();
    const HealAttention<double> ad = ToDouble(a);
    const HealParams<double> pd = ToDouble(p);
    HealParams<double> gd = pd.ZerosLike();
    absl::StatusOr<double> ref =
        HealLoss<double>(ad, pd, x.cast<double>(), y.cast<double>(), &gd);
    ASSERT_TRUE(ref.ok()) << ref.status();
    ASSERT_GT(*ref, 0);
    EXPECT_NEAR(*loss, *ref, 1e-5 * *ref);
    absl::StatusOr<double> no_grad =
        HealLossOnBackend(*be_, a, p, x, y, nullptr);
    ASSERT_TRUE(no_grad.ok()) << no_grad.status();
    EXPECT_EQ(*no_grad, *loss);
    for (int b = 0; b < HealParams<float>::kBlocks; ++b) {
      const double gmax = gd.block(b).cwiseAbs().maxCoeff();
      ASSERT_GT(gmax, 0) << "block " << b;
      ASSERT_EQ(g.block(b).rows(), gd.block(b).rows()) << "block " << b;
      ASSERT_EQ(g.block(b).cols(), gd.block(b).cols()) << "block " << b;
      const double diff =
          (g.block(b).cast<double>() - gd.block(b)).cwiseAbs().maxCoeff();
      EXPECT_LT(diff, 2e-4 * gmax) << GetParam() << " block " << b;
    }
  }
};

TEST_P(HealBackendTest, LossAndGradientMatchFloat64OnRandomLayers) {
  std::mt19937_64 rng(17);
  // T = 130 crosses the cpu kernels' 128-query blocks; 2 windows must not
  // see each other; rope width 4 and head width 8 + 4 exercise the column
  // blocks; scores of order 1 (sigma 0.4 on D = 16) keep the softmax far
  // from uniform and from one-hot.
  const HealShape s{3, 8, 4, 6, 16};  // n_h, d_h, R, r, D
  const HealAttention<float> a = Attention(s, 130, rng);
  const HealParams<float> p = Params(s, 0.4, rng);
  const MF x = Gaussian(2 * 130, s.hidden, 1.0, rng);
  const MF y = Gaussian(2 * 130, s.hidden, 1.0, rng);
  ExpectMatchesReference(a, p, x, y);
  // Short windows (T = 3) and one head.
  const HealShape s1{1, 4, 2, 3, 5};
  const HealAttention<float> a1 = Attention(s1, 3, rng);
  ExpectMatchesReference(a1, Params(s1, 0.6, rng),
                         Gaussian(4 * 3, s1.hidden, 1.0, rng),
                         Gaussian(4 * 3, s1.hidden, 1.0, rng));
}

// A real healing problem: stories260K's layer 1 exported to the latent
// layout at rank 16 with R = 4 of its 8 head dims rotated, on the k/v
// input the engine computes for real text, against the original GQA
// layer's output.
TEST_P(HealBackendTest, LossAndGradientMatchFloat64OnAFixtureLayer) {
  CARE_REQUIRE_FIXTURES();
  constexpr int64_t kLayer = 1, kT = 64, kWindows = 4, kR = 4, kRank = 16;
  auto model = io::OpenModel(::care::testing::FixturePath("stories260K-hf"),
                             engine::Families());
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& config = model->config;
  engine::EngineOptions eo;
  eo.threads = 1;
  auto fwd = engine::LayerwiseForward::Create(
      config, *model->weights, testing::FirstWindows(kWindows, kT), eo);
  ASSERT_TRUE(fwd.ok()) << fwd.status();
  ASSERT_TRUE((*fwd)->RunLayers(kLayer).ok());
  MatrixRM x;
  engine::LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t, const compute::Matrix& m) -> absl::Status {
    absl::StatusOr<MatrixRM> h = engine::DownloadMatrix((*fwd)->backend(), m);
    if (!h.ok()) return h.status();
    x = *std::move(h);
    return absl::OkStatus();
  };
  ASSERT_TRUE((*fwd)->ObserveKvInput(hooks).ok());
  ASSERT_EQ(x.rows(), kWindows * kT);

  absl::StatusOr<LayerWeights> w =
      LoadLayerWeights(config, *model->weights, kLayer);
  ASSERT_TRUE(w.ok()) << w.status();
  CovarianceAccumulator acc(config.hidden_size);
  ASSERT_TRUE(acc.Add(x).ok());
  const int64_t n_h = config.num_attention_heads, dh = config.head_dim;
  MlaLayerOptions mo;
  mo.num_heads = n_h;
  mo.rope = {config.num_key_value_heads, dh, kR, 1};
  mo.kv_lora_rank = kRank;
  absl::StatusOr<MlaLayer> m =
      ExportLayer(*w, {acc.Covariance(), acc.MeanAbs(), acc.tokens()}, mo);
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<Tensor> q = model->weights->LoadF32(io::names::QProj(kLayer));
  ASSERT_TRUE(q.ok()) << q.status();
  absl::StatusOr<HealParams<float>> p = HealStart(kLayer, *m, *q, *w, n_h);
  ASSERT_TRUE(p.ok()) << p.status();
  absl::StatusOr<GqaAttention<float>> gqa =
      LoadGqaAttention<float>(config, *model->weights, kLayer);
  ASSERT_TRUE(gqa.ok()) << gqa.status();
  absl::StatusOr<MF> y = GqaAttentionOutput<float>(*gqa, kT, x);
  ASSERT_TRUE(y.ok()) << y.status();

  // The source's first R/2 frequencies: any table serves, as long as the
  // backend and the reference share it.
  absl::StatusOr<engine::RopeFrequencies> f =
      engine::ComputeRopeFrequencies(config);
  ASSERT_TRUE(f.ok()) << f.status();
  HealAttention<float> a;
  a.shape = {n_h, dh, kR, kRank, config.hidden_size};
  a.seq_len = kT;
  a.cos.resize(kT, kR / 2);
  a.sin.resize(kT, kR / 2);
  for (int64_t t = 0; t < kT; ++t) {
    for (int64_t i = 0; i < kR / 2; ++i) {
      a.cos(t, i) = float(std::cos(t * f->inv_freq[i]));
      a.sin(t, i) = float(std::sin(t * f->inv_freq[i]));
    }
  }
  a.scale = float(1 / std::sqrt(double(dh + kR)));
  a.o_proj = gqa->w_o;
  ExpectMatchesReference(a, *p, x, *y);
}

// The recovery problem of heal_layer_test.cc (a teacher of the same form,
// a 30 % perturbed start) in float: HealLayerOnBackend must run HealLayer's
// loop: the same held-out error at the start (one forward, 1e-5), the same
// number of steps and evaluations, progress calls, and a kept layer of the
// same quality (the float paths round differently, so the trajectories
// drift apart by rounding only: 2 % of the end error).
class HealBackendLoopTest : public HealBackendTest {
 protected:
  void SetUp() override {
    HealBackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    pr_ = testing::MakeRecoveryProblem<float>();
  }
  static constexpr int64_t kT = testing::HealRecoveryProblem<float>::kT;
  testing::HealRecoveryProblem<float> pr_;
};

TEST_P(HealBackendLoopTest, RunsHealLayersLoop) {
  HealOptions o;
  o.max_steps = 120;
  o.batch_windows = 8;
  o.learning_rate = 1e-2;
  o.eval_every = 20;
  o.patience = 5;
  o.seed = 3;
  HealParams<float> ref_p = pr_.start;
  absl::StatusOr<HealResult> ref = HealLayer<float>(
      pr_.a, ref_p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  ASSERT_TRUE(ref.ok()) << ref.status();
  int64_t calls = 0;
  o.on_step = [&](int64_t) {
    ++calls;
    return absl::OkStatus();
  };
  HealParams<float> p = pr_.start;
  absl::StatusOr<HealResult> r = HealLayerOnBackend(
      *be_, pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_NEAR(r->heldout_before, ref->heldout_before,
              1e-5 * ref->heldout_before);
  EXPECT_NEAR(r->train_before, ref->train_before, 1e-5 * ref->train_before);
  EXPECT_EQ(r->steps, ref->steps);
  EXPECT_EQ(calls, r->steps);
  EXPECT_EQ(r->best_step, ref->best_step);
  EXPECT_LT(r->heldout_after, 0.5 * r->heldout_before);  // it healed
  EXPECT_NEAR(r->heldout_after, ref->heldout_after, 0.02 * ref->heldout_after);
  // The kept parameters are the ones measured (on the float64 reference).
  absl::StatusOr<double> loss =
      HealLoss<double>(ToDouble(pr_.a), ToDouble(p), pr_.x_held.cast<double>(),
                       pr_.y_held.cast<double>(), nullptr);
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(*loss / pr_.y_held.cast<double>().squaredNorm(), r->heldout_after,
              1e-4 * r->heldout_after);
}

TEST_P(HealBackendLoopTest, NeverKeepsAWorseLayerAndStopsEarly) {
  HealOptions o;
  o.max_steps = 60;
  o.learning_rate = 50;  // every step jumps far past the optimum
  o.eval_every = 10;
  o.patience = 2;
  HealParams<float> p = pr_.start;
  absl::StatusOr<HealResult> r = HealLayerOnBackend(
      *be_, pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->best_step, 0);
  EXPECT_EQ(r->heldout_after, r->heldout_before);
  EXPECT_EQ(r->steps, 20);  // two evaluations without improvement
  for (int b = 0; b < HealParams<float>::kBlocks; ++b) {
    EXPECT_EQ(p.block(b), pr_.start.block(b)) << "block " << b;
  }
}

TEST_P(HealBackendLoopTest, CancellationAndBadShapes) {
  HealOptions o;
  o.on_step = [](int64_t step) {
    return step == 3 ? absl::CancelledError("stop") : absl::OkStatus();
  };
  HealParams<float> p = pr_.start;
  absl::StatusOr<HealResult> r = HealLayerOnBackend(
      *be_, pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);

  p.up_v = MF::Zero(4, 7);
  absl::StatusOr<double> l =
      HealLossOnBackend(*be_, pr_.a, p, pr_.x_held, pr_.y_held, nullptr);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(l.status().message().find("up_v"), std::string::npos);
  const MF partial = pr_.x_held.topRows(kT + 3);  // not whole windows
  EXPECT_EQ(HealLossOnBackend(*be_, pr_.a, pr_.start, partial, partial, nullptr)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Devices, HealBackendTest,
                         ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });
INSTANTIATE_TEST_SUITE_P(Devices, HealBackendLoopTest,
                         ::testing::Values("cpu", "cuda"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace care::convert::mla
