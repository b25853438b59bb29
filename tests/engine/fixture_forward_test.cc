// The engine against the fixtures' independent float64 references
// (stories260K_reference/SOURCE.md, tinygqa-hf/SOURCE.md).
#include <gtest/gtest.h>

#include <Eigen/SVD>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/kv_projector.h"
#include "care/engine/perplexity.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "support/fixtures.h"

namespace care::engine {
namespace {

using ::care::testing::FixturePath;
using ::care::testing::TestDevice;

std::vector<int32_t> ReadU16(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint16_t> raw;
  uint16_t v;
  while (in.read(reinterpret_cast<char*>(&v), 2)) raw.push_back(v);
  return std::vector<int32_t>(raw.begin(), raw.end());
}

std::vector<float> ReadF32(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<float> out;
  float v;
  while (in.read(reinterpret_cast<char*>(&v), 4)) out.push_back(v);
  return out;
}

std::vector<int32_t> Stream() {
  return ReadU16(
      FixturePath("stories260K_reference/tinystories_val_head.tok512.u16"));
}

io::Model Open(const std::string& name) {
  auto model = io::OpenModel(FixturePath(name), ::care::engine::Families());
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(model).value();
}

// Max |engine - reference| over the logits of [BOS] + stream[start, start+63).
double MaxLogitError(const std::string& model_dir, int64_t start,
                     const std::string& reference) {
  io::Model model = Open(model_dir);
  const std::vector<int32_t> stream = Stream();
  TokenWindows w{.num_windows = 1, .seq_len = 64, .ids = {1}};
  w.ids.insert(w.ids.end(), stream.begin() + start,
               stream.begin() + start + 63);
  EngineOptions options;
  options.device = TestDevice();
  auto fwd = LayerwiseForward::Create(model.config, *model.weights, w, options);
  EXPECT_TRUE(fwd.ok()) << fwd.status();
  EXPECT_TRUE((*fwd)->RunLayers((*fwd)->num_layers()).ok());
  auto logits = (*fwd)->Logits();
  EXPECT_TRUE(logits.ok()) << logits.status();
  const std::vector<float> ref = ReadF32(FixturePath(reference));
  EXPECT_EQ(static_cast<int64_t>(ref.size()), logits->size());
  double max_err = 0.0;
  for (int64_t i = 0; i < logits->size(); ++i) {
    max_err = std::max(max_err, std::abs(double{logits->data()[i]} - ref[i]));
  }
  return max_err;
}

double MeanNll(const std::string& model_dir, int64_t seq_len, int64_t windows,
               int64_t start, std::optional<int32_t> bos,
               int64_t* predictions = nullptr) {
  io::Model model = Open(model_dir);
  auto eval = MakeEvalWindows(
      Stream(),
      {.seq_len = seq_len, .max_windows = windows, .start = start, .bos = bos});
  EXPECT_TRUE(eval.ok()) << eval.status();
  auto result = EvaluatePerplexity(model.config, *model.weights, *eval,
                                   {.device = TestDevice()});
  EXPECT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->windows, windows);
  if (predictions != nullptr) *predictions = result->predictions;
  return result->mean_nll;
}

// SOURCE.md: a float32 forward matches the float64 logits to about 1e-4 on
// these tiny models; the issue asks for <= 1e-3, which leaves room for
// different summation orders (OpenMP, GEMM blocking).
constexpr double kLogitTolerance = 1e-3;
// SOURCE.md: "A float32 implementation should match these means to about
// 1e-4"; the means are published with 6 decimals.
constexpr double kNllTolerance = 1e-4;

TEST(FixtureForwardTest, Stories260kLogitsMatchReference) {
  CARE_REQUIRE_FIXTURES();
  const double err = MaxLogitError(
      "stories260K-hf", 0, "stories260K_reference/logits_bos_first63.f32");
  std::printf("stories260K-hf logits: max abs error %.3g\n", err);
  EXPECT_LE(err, kLogitTolerance);
}

TEST(FixtureForwardTest, Stories260kPlainWindowNll) {
  CARE_REQUIRE_FIXTURES();
  int64_t predictions = 0;
  const double nll256 = MeanNll("stories260K-hf", 256, 16, 0, {}, &predictions);
  EXPECT_EQ(predictions, 4080);
  EXPECT_NEAR(nll256, 1.353581, kNllTolerance);
  const double nll512 = MeanNll("stories260K-hf", 512, 16, 0, {}, &predictions);
  EXPECT_EQ(predictions, 8176);
  EXPECT_NEAR(nll512, 1.376194, kNllTolerance);
  std::printf(
      "stories260K-hf NLL: T=256 %.6f (ref 1.353581), T=512 %.6f (ref "
      "1.376194)\n",
      nll256, nll512);
}

TEST(FixtureForwardTest, Stories260kBosPrefixedNll) {
  CARE_REQUIRE_FIXTURES();
  int64_t predictions = 0;
  const double nll = MeanNll("stories260K-hf", 256, 8, 0, 1, &predictions);
  EXPECT_EQ(predictions, 2040);
  EXPECT_NEAR(nll, 1.471694, kNllTolerance);
  std::printf("stories260K-hf P2 NLL %.6f (ref 1.471694)\n", nll);
}

TEST(FixtureForwardTest, ShardedVariantEqualsSingleFile) {
  CARE_REQUIRE_FIXTURES();
  // Same F32 bytes, split across two files: identical results expected; the
  // only freedom is summation order, far below 1e-6.
  const double err =
      MaxLogitError("stories260K-hf-sharded", 0,
                    "stories260K_reference/logits_bos_first63.f32");
  EXPECT_LE(err, kLogitTolerance);
  EXPECT_NEAR(MeanNll("stories260K-hf-sharded", 256, 16, 0, {}), 1.353581,
              kNllTolerance);
}

TEST(FixtureForwardTest, Bf16VariantWithinBf16Tolerance) {
  CARE_REQUIRE_FIXTURES();
  // BF16 keeps 8 significand bits (relative rounding <= 2^-9 ≈ 0.002 per
  // weight). SOURCE.md measured the rounded weights moving logits by up to
  // 0.11 in float64; we allow 0.15. The mean NLL over 4,080 predictions
  // averages those perturbations; 0.01 nats (0.7 %) bounds it.
  const double err = MaxLogitError(
      "stories260K-hf-bf16", 0, "stories260K_reference/logits_bos_first63.f32");
  std::printf("stories260K-hf-bf16 logits: max abs error %.3g\n", err);
  EXPECT_LE(err, 0.15);
  EXPECT_GT(err, 1e-4);  // really the rounded weights, not the F32 file
  const double nll = MeanNll("stories260K-hf-bf16", 256, 16, 0, {});
  std::printf("stories260K-hf-bf16 NLL T=256 %.6f (F32 ref 1.353581)\n", nll);
  EXPECT_NEAR(nll, 1.353581, 0.01);
}

constexpr int64_t kTinyGqaHeldOut = 353710;

TEST(FixtureForwardTest, TinyGqaLogitsMatchReference) {
  CARE_REQUIRE_FIXTURES();
  const double err =
      MaxLogitError("tinygqa-hf", kTinyGqaHeldOut,
                    "tinygqa_reference/logits_bos_heldout_first63.f32");
  std::printf("tinygqa-hf logits: max abs error %.3g\n", err);
  EXPECT_LE(err, kLogitTolerance);
}

TEST(FixtureForwardTest, TinyGqaHeldOutNll) {
  CARE_REQUIRE_FIXTURES();
  const double nll = MeanNll("tinygqa-hf", 256, 16, kTinyGqaHeldOut, {});
  std::printf("tinygqa-hf NLL 16x256 %.6f (ref 1.990152)\n", nll);
  EXPECT_NEAR(nll, 1.990152, kNllTolerance);
  const double nll64 = MeanNll("tinygqa-hf", 256, 64, kTinyGqaHeldOut, {});
  std::printf("tinygqa-hf NLL 64x256 %.6f (ref 1.982076)\n", nll64);
  EXPECT_NEAR(nll64, 1.982076, kNllTolerance);
}

// A rank-r K/V projection of layer l of `model` (truncated SVD of W_K and
// W_V: A = S_r·V_rᵀ, B = U_r), a different model from the checkpoint's own.
std::unique_ptr<KvProjector> LowRankProjector(const io::Model& model, int64_t l,
                                              int64_t r) {
  auto factor = [&](const std::string& name, MatrixRM* a, MatrixRM* b) {
    auto w = model.weights->LoadF32(name);
    EXPECT_TRUE(w.ok()) << w.status();
    const Eigen::MatrixXd wd = w->matrix().cast<double>();  // [kv, D]
    Eigen::BDCSVD<Eigen::MatrixXd> svd(
        wd, Eigen::ComputeThinU | Eigen::ComputeThinV);
    *a = (svd.singularValues().head(r).asDiagonal() *
          svd.matrixV().leftCols(r).transpose())
             .cast<float>();                       // [r, D]
    *b = svd.matrixU().leftCols(r).cast<float>();  // [kv, r]
  };
  MatrixRM ak, bk, av, bv;
  factor(io::names::KProj(l), &ak, &bk);
  factor(io::names::VProj(l), &av, &bv);
  return std::make_unique<LatentKvProjector>(std::move(ak), std::move(bk),
                                             std::move(av), std::move(bv));
}

TEST(FixtureForwardTest, PairEqualsTheTwoModelsEvaluatedApart) {
  CARE_REQUIRE_FIXTURES();
  // The original and a rank-8 K/V model in one pass give each model's own
  // NLL (up to float rounding: the GEMMs have twice the rows; 1e-6 as in
  // ResultIsIndependentOfBlocking). The two models differ by far more, so a
  // row routed to the wrong projection shows. Small groups make attention
  // groups straddle the two copies; a small memory bound splits the windows
  // into passes (3, then 2).
  io::Model model = Open("tinygqa-hf");
  auto eval = MakeEvalWindows(
      Stream(), {.seq_len = 64, .max_windows = 5, .start = kTinyGqaHeldOut});
  ASSERT_TRUE(eval.ok()) << eval.status();
  const auto low_rank =
      [&](int64_t l) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
    return LowRankProjector(model, l, 8);
  };
  const EngineOptions options{.device = TestDevice()};
  auto orig = EvaluatePerplexity(model.config, *model.weights, *eval, options);
  LayerHooks hooks;
  hooks.make_kv_projector = low_rank;
  auto conv =
      EvaluatePerplexity(model.config, *model.weights, *eval, options, hooks);
  ASSERT_TRUE(orig.ok() && conv.ok());
  ASSERT_GT(std::abs(orig->mean_nll - conv->mean_nll), 1e-3);
  const int64_t window_bytes = 2 * 63 * model.config.hidden_size * 4;
  for (const auto& [group_tokens, max_bytes] :
       {std::pair<int64_t, int64_t>{8192, int64_t{1} << 30},
        {2 * 63, 3 * window_bytes}}) {
    SCOPED_TRACE(group_tokens);
    int64_t layers_seen = 0;
    LayerHooks progress;
    progress.on_layer_output = [&](int64_t, const compute::Matrix&) {
      ++layers_seen;
      return absl::OkStatus();
    };
    EngineOptions o = options;
    o.group_tokens = group_tokens;
    auto pair = EvaluatePerplexityPair(model.config, *model.weights, *eval, o,
                                       low_rank, progress, max_bytes);
    ASSERT_TRUE(pair.ok()) << pair.status();
    const int64_t passes = max_bytes < (int64_t{1} << 30) ? 2 : 1;
    EXPECT_EQ(layers_seen, passes * model.config.num_hidden_layers);
    EXPECT_EQ(pair->first.windows, 5);
    EXPECT_EQ(pair->first.predictions, orig->predictions);
    EXPECT_EQ(pair->second.predictions, conv->predictions);
    EXPECT_NEAR(pair->first.mean_nll, orig->mean_nll, 1e-6);
    EXPECT_NEAR(pair->second.mean_nll, conv->mean_nll, 1e-6);
  }
}

TEST(FixtureForwardTest, ResultIsIndependentOfBlocking) {
  CARE_REQUIRE_FIXTURES();
  // Tiny logits blocks force many vocabulary chunks and row blocks (the
  // running log-sum-exp), tiny groups split attention and MLP work, several
  // passes split the windows: the same NLL up to float rounding.
  io::Model model = Open("stories260K-hf");
  auto eval =
      MakeEvalWindows(Stream(), {.seq_len = 128, .max_windows = 4, .bos = {}});
  ASSERT_TRUE(eval.ok());
  auto big = EvaluatePerplexity(model.config, *model.weights, *eval,
                                {.device = TestDevice()});
  // Also: attention one window at a time, MLP in 100-row blocks.
  auto small = EvaluatePerplexity(
      model.config, *model.weights, *eval,
      {.device = TestDevice(), .logits_block_elements = 1, .group_tokens = 100},
      /*hooks=*/{}, /*windows_per_pass=*/3);
  ASSERT_TRUE(big.ok() && small.ok());
  EXPECT_EQ(big->predictions, small->predictions);
  EXPECT_NEAR(big->mean_nll, small->mean_nll, 1e-6);
}

}  // namespace
}  // namespace care::engine
