// Healing of the DeepSeek-V3 export (heal_layer.h): the analytic gradient
// through causal softmax attention with RoPE against central finite
// differences in float64; the optimiser recovering a perturbed layer and
// never keeping a worse one; and the conventions shared with the export
// (q scale, interleaved k_pe/q_pe, kv_b per head) against the original GQA
// attention (gqa_attention.h): a layer whose export is exact has zero
// healing loss at its start.
#include "care/convert/mla_export/heal_layer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <string>

#include "care/convert/covariance.h"
#include "care/convert/mla_export/gqa_attention.h"
#include "care/convert/mla_export/heal_tensors.h"
#include "care/engine/families.h"
#include "care/engine/rope.h"
#include "care/io/model_config.h"
#include "care/io/tensor_names.h"
#include "care/io/tensor_source.h"
#include "mla_export/heal_test_util.h"

namespace care::convert::mla {
namespace {

using MD = HealMatrix<double>;

constexpr auto* Gaussian = &testing::Gaussian<double>;
constexpr auto* Attention = &testing::RandomAttention<double>;
constexpr auto* Params = &testing::RandomParams<double>;

TEST(HealLayerTest, GradientMatchesCentralDifferences) {
  std::mt19937_64 rng(7);
  const HealShape s{2, 4, 4, 3, 6};  // n_h, d_h, R, r, D
  const HealAttention<double> a = Attention(s, 5, rng);
  // Scores of order 1: the softmax is far from uniform and from one-hot,
  // so every term of its Jacobian matters.
  const HealParams<double> p = Params(s, 0.6, rng);
  const MD x = Gaussian(2 * 5, s.hidden, 1.0, rng);  // two windows
  const MD y = Gaussian(2 * 5, s.hidden, 1.0, rng);
  HealParams<double> g = p.ZerosLike();
  absl::StatusOr<double> loss = HealLoss<double>(a, p, x, y, &g);
  ASSERT_TRUE(loss.ok()) << loss.status();
  // Central differences with step h: truncation error ~h²·|L'''| (~1e-10
  // here: L and its derivatives are O(10..100) at h = 1e-5) and rounding
  // ~eps·|L|/h ~ 1e-9; 1e-6 of the block's largest gradient leaves a
  // margin of 100 while a wrong term (a missing softmax row term, a
  // rotation sign, a transpose) changes entries by O(1) of that scale.
  constexpr double kH = 1e-5;
  for (int b = 0; b < HealParams<double>::kBlocks; ++b) {
    const double gmax = g.block(b).cwiseAbs().maxCoeff();
    ASSERT_GT(gmax, 1e-3) << "block " << b;
    for (int64_t i = 0; i < p.block(b).size(); ++i) {
      HealParams<double> plus = p, minus = p;
      plus.block(b).data()[i] += kH;
      minus.block(b).data()[i] -= kH;
      const double fd = (*HealLoss<double>(a, plus, x, y, nullptr) -
                         *HealLoss<double>(a, minus, x, y, nullptr)) /
                        (2 * kH);
      EXPECT_NEAR(g.block(b).data()[i], fd, 1e-6 * gmax)
          << "block " << b << " entry " << i;
    }
  }
}

// Targets from a teacher layer of the same form: healing a perturbed copy
// must bring the held-out error far down (the optimum is reachable), and a
// step size that only diverges must leave the start untouched.
class HealRecoveryTest : public ::testing::Test {
 protected:
  void SetUp() override { pr_ = testing::MakeRecoveryProblem<double>(); }
  testing::HealRecoveryProblem<double> pr_;
};

TEST_F(HealRecoveryTest, RecoversAPerturbedLayerOnHeldOutWindows) {
  HealParams<double> p = pr_.start;
  HealOptions o;
  o.max_steps = 400;
  o.batch_windows = 8;
  o.learning_rate = 1e-2;
  o.eval_every = 20;
  o.patience = 5;
  int64_t calls = 0;
  o.on_step = [&](int64_t) {
    ++calls;
    return absl::OkStatus();
  };
  absl::StatusOr<HealResult> r = HealLayer<double>(
      pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->heldout_before, 0.05);  // a real perturbation
  // A 30 % perturbation of every weight; Adam on 48 windows gets within a
  // tenth of the starting error (measured ~1-3 %, the bound leaves margin).
  EXPECT_LT(r->heldout_after, 0.1 * r->heldout_before);
  EXPECT_GT(r->best_step, 0);
  EXPECT_EQ(calls, r->steps);
  // The kept parameters are the ones measured.
  absl::StatusOr<double> loss =
      HealLoss<double>(pr_.a, p, pr_.x_held, pr_.y_held, nullptr);
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(*loss / pr_.y_held.squaredNorm(), r->heldout_after,
              1e-12 + 1e-9 * r->heldout_after);
}

TEST_F(HealRecoveryTest, NeverKeepsAWorseLayer) {
  HealParams<double> p = pr_.start;
  HealOptions o;
  o.max_steps = 60;
  o.learning_rate = 50;  // every step jumps far past the optimum
  o.eval_every = 10;
  o.patience = 2;
  absl::StatusOr<HealResult> r = HealLayer<double>(
      pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->best_step, 0);
  EXPECT_EQ(r->heldout_after, r->heldout_before);
  EXPECT_LT(r->steps, 60);  // stopped early
  for (int b = 0; b < HealParams<double>::kBlocks; ++b) {
    EXPECT_EQ(p.block(b), pr_.start.block(b)) << "block " << b;
  }
}

TEST_F(HealRecoveryTest, CancellationStopsBetweenSteps) {
  HealParams<double> p = pr_.start;
  HealOptions o;
  o.on_step = [](int64_t step) {
    return step == 3 ? absl::CancelledError("stop") : absl::OkStatus();
  };
  absl::StatusOr<HealResult> r = HealLayer<double>(
      pr_.a, p, pr_.x_train, pr_.y_train, pr_.x_held, pr_.y_held, o);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kCancelled);
}

TEST(HealLayerTest, ClearErrorsOnShapes) {
  std::mt19937_64 rng(3);
  const HealShape s{2, 4, 4, 3, 6};
  const HealAttention<double> a = Attention(s, 5, rng);
  HealParams<double> p = Params(s, 0.5, rng);
  p.up_v = MD::Zero(3, 7);
  const MD x = Gaussian(5, 6, 1.0, rng);
  absl::StatusOr<double> l = HealLoss<double>(a, p, x, x, nullptr);
  EXPECT_EQ(l.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(l.status().message().find("up_v"), std::string::npos);
  p = Params(s, 0.5, rng);
  const MD partial = Gaussian(7, 6, 1.0, rng);  // not whole windows
  EXPECT_FALSE(HealLoss<double>(a, p, partial, partial, nullptr).ok());
}

// One KV head with rope_dim = head_dim at full latent rank exports exactly
// (mla_layer_test.cc): healing's start must then reproduce the original
// GQA attention output, which checks q_scale, the interleaved q_pe/k_pe
// rows against the source's half-split RoPE, kv_b per head and the softmax
// scale shared by heal_layer, heal_tensors and gqa_attention.
TEST(HealLayerTest, ExactExportStartsAtZeroLoss) {
  constexpr int64_t kD = 24, kNh = 4, kDh = 8, kT = 12;
  const nlohmann::json cj = {{"architectures", {"LlamaForCausalLM"}},
                             {"model_type", "llama"},
                             {"hidden_size", kD},
                             {"intermediate_size", 32},
                             {"num_hidden_layers", 1},
                             {"num_attention_heads", kNh},
                             {"num_key_value_heads", 1},
                             {"head_dim", kDh},
                             {"vocab_size", 16},
                             {"max_position_embeddings", 64},
                             {"rms_norm_eps", 1e-5},
                             {"rope_theta", 10000.0}};
  absl::StatusOr<ModelConfig> config =
      ParseModelConfig(cj.dump(), "test config.json", engine::Families());
  ASSERT_TRUE(config.ok()) << config.status();
  std::mt19937_64 rng(5);
  auto tensor = [&](int64_t rows, int64_t cols, double sigma) {
    const MD m = Gaussian(rows, cols, sigma, rng);
    Tensor t;
    t.shape = {rows, cols};
    t.data.resize(m.size());
    for (int64_t i = 0; i < m.size(); ++i) t.data[i] = float(m.data()[i]);
    return t;
  };
  InMemoryTensorSource src;
  src.Add(io::names::QProj(0), tensor(kNh * kDh, kD, 0.4));
  src.Add(io::names::KProj(0), tensor(kDh, kD, 0.4));
  src.Add(io::names::VProj(0), tensor(kDh, kD, 0.4));
  src.Add(io::names::OProj(0), tensor(kD, kNh * kDh, 0.4));
  absl::StatusOr<LayerWeights> w = LoadLayerWeights(*config, src, 0);
  ASSERT_TRUE(w.ok()) << w.status();
  const MD x = Gaussian(2 * kT, kD, 1.0, rng);
  const MatrixRM xf = x.cast<float>();
  CovarianceAccumulator acc(kD);
  ASSERT_TRUE(acc.Add(xf).ok());
  MlaLayerOptions mo;
  mo.num_heads = kNh;
  mo.rope = {1, kDh, kDh, 1};
  mo.kv_lora_rank = 2 * kDh;
  absl::StatusOr<MlaLayer> m =
      ExportLayer(*w, {acc.Covariance(), acc.MeanAbs(), acc.tokens()}, mo);
  ASSERT_TRUE(m.ok()) << m.status();
  const Tensor q = *src.LoadF32(io::names::QProj(0));
  absl::StatusOr<HealParams<float>> start = HealStart(0, *m, q, *w, kNh);
  ASSERT_TRUE(start.ok()) << start.status();
  HealParams<double> p;
  for (int b = 0; b < HealParams<double>::kBlocks; ++b) {
    p.block(b) = start->block(b).cast<double>();
  }
  absl::StatusOr<GqaAttention<double>> gqa =
      LoadGqaAttention<double>(*config, src, 0);
  ASSERT_TRUE(gqa.ok()) << gqa.status();
  absl::StatusOr<MD> y = GqaAttentionOutput<double>(*gqa, kT, x);
  ASSERT_TRUE(y.ok()) << y.status();

  HealAttention<double> a;
  a.shape = {kNh, kDh, kDh, 2 * kDh, kD};
  a.seq_len = kT;
  absl::StatusOr<engine::RopeFrequencies> f =
      engine::ComputeRopeFrequencies(*config);
  ASSERT_TRUE(f.ok());
  a.cos.resize(kT, kDh / 2);
  a.sin.resize(kT, kDh / 2);
  for (int64_t t = 0; t < kT; ++t) {
    for (int64_t i = 0; i < kDh / 2; ++i) {
      a.cos(t, i) = std::cos(t * f->inv_freq[i]);
      a.sin(t, i) = std::sin(t * f->inv_freq[i]);
    }
  }
  a.scale = 1 / std::sqrt(2.0 * kDh);
  a.o_proj = gqa->w_o;
  absl::StatusOr<double> loss = HealLoss<double>(a, p, x, *y, nullptr);
  ASSERT_TRUE(loss.ok()) << loss.status();
  // Float32 factors (relative rounding ~1e-7 per weight, D = 24 terms):
  // squared relative error ~1e-12; a convention mismatch gives O(1).
  EXPECT_LT(*loss / y->squaredNorm(), 1e-9);
}

}  // namespace
}  // namespace care::convert::mla
