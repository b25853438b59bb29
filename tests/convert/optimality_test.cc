// On real calibration activations (the fixtures' own k/v inputs), care is
// the activation-error optimum in every layer, and its whitened tail is the
// measured calibration error; a bias-carrying model converts exactly.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>

#include "care/convert/calibrate.h"
#include "care/convert/latent_layer.h"
#include "care/convert/pipeline.h"
#include "care/engine/families.h"
#include "care/engine/synthetic_model.h"
#include "care/io/model.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert {
namespace {

class OptimalityTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimalityTest, CareBeatsEveryBaselineInEveryLayer) {
  CARE_REQUIRE_FIXTURES();
  auto model = io::OpenModel(::care::testing::FixturePath(GetParam()),
                             ::care::engine::Families());
  ASSERT_TRUE(model.ok()) << model.status();
  const ModelConfig& config = model->config;
  CalibrationPlan plan;
  plan.samples = 64;
  plan.seq_len = 32;
  plan.heldout_windows = 8;
  plan.range = {0, 200000};
  auto windows = MakeCalibrationWindows(testing::TokenStream(), plan);
  ASSERT_TRUE(windows.ok()) << windows.status();
  auto stats = CollectStatistics(config, *model->weights, *windows, {}, {});
  ASSERT_TRUE(stats.ok()) << stats.status();
  const int64_t width = config.kv_width();
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
    auto w = LoadLayerWeights(config, *model->weights, l);
    ASSERT_TRUE(w.ok());
    const LayerStatistics& c = stats->calib[l];
    auto error = [&](Method m, int64_t r, bool is_v, double* tail = nullptr) {
      const FactorizeOptions o{.method = m, .damping = 0};
      auto d = DecomposeLayer(*w, c, o);
      EXPECT_TRUE(d.ok()) << d.status();
      auto f = TruncateLayer(*d, r, r);
      EXPECT_TRUE(f.ok()) << f.status();
      if (tail) *tail = 1.0 - (is_v ? f->v : f->k).retained_energy;
      return RelativeActivationError(c.covariance, is_v ? w->w_v : w->w_k,
                                     is_v ? f->v : f->k);
    };
    for (int64_t r : {width / 8, width / 4, width / 2}) {
      for (bool is_v : {false, true}) {
        double predicted = 0;
        const double care = error(Method::kCare, r, is_v, &predicted);
        // Whitened tail / total == measured error on the same tokens; float32
        // factors and C (see covariance_test) leave ~1e-6 of the total.
        EXPECT_NEAR(predicted, care, 1e-5) << "layer " << l << " rank " << r;
        for (Method m : {Method::kCareC, Method::kAsvd, Method::kSvd}) {
          EXPECT_LE(care, error(m, r, is_v) + 1e-6)
              << GetParam() << " layer " << l << (is_v ? " V" : " K")
              << " rank " << r << " vs " << MethodName(m);
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, OptimalityTest,
                         ::testing::Values("stories260K-hf", "tinygqa-hf"),
                         [](const auto& info) {
                           return info.param == "tinygqa-hf"
                                      ? std::string("tinygqa")
                                      : std::string("stories260K");
                         });

// attention_bias (Qwen2-style): the K/V biases fold into k_b_proj.bias /
// v_b_proj.bias and full rank reproduces the logits.
TEST(BiasTest, FullRankWithBiasesReproducesLogits) {
  const std::string dir = ::care::testing::MakeTempDir("convert_bias");
  const nlohmann::json config = {{"architectures", {"Qwen2ForCausalLM"}},
                                 {"model_type", "qwen2"},
                                 {"hidden_size", 32},
                                 {"intermediate_size", 48},
                                 {"num_hidden_layers", 2},
                                 {"num_attention_heads", 4},
                                 {"num_key_value_heads", 2},
                                 {"head_dim", 8},
                                 {"vocab_size", 64},
                                 {"max_position_embeddings", 64},
                                 {"rms_norm_eps", 1e-5},
                                 {"rope_theta", 10000.0},
                                 {"tie_word_embeddings", false},
                                 {"attention_bias", true}};
  engine::SyntheticOptions weights{.seed = 3,
                                   .fan_in_scaling = true,
                                   .embedding_std = 1.0f,
                                   .bias_std = 0.2f};
  ASSERT_TRUE(engine::WriteSyntheticModel(config, dir + "/src", io::DType::kF32,
                                          weights)
                  .ok());
  // Random ids below the vocabulary as a .u32 calibration file.
  std::mt19937 rng(5);
  std::vector<uint32_t> ids(4000);
  for (uint32_t& id : ids) id = rng() % 64;
  {
    std::ofstream f(dir + "/calib.u32", std::ios::binary);
    f.write(reinterpret_cast<const char*>(ids.data()), ids.size() * 4);
  }
  ConvertOptions o;
  o.model = dir + "/src";
  o.output_dir = dir + "/out";
  o.budget = Budget::KvSave(0);
  o.calib_data = dir + "/calib.u32";
  o.calib_samples = 32;
  o.calib_seq_len = 16;
  o.heldout_windows = 4;
  auto r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  auto out = io::OpenModel(dir + "/out", ::care::engine::Families());
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->weights->Has("model.layers.1.self_attn.k_b_proj.bias"));
  EXPECT_FALSE(out->weights->Has("model.layers.1.self_attn.k_proj.bias"));
  engine::TokenWindows w{.num_windows = 2, .seq_len = 16, .ids = {}};
  for (int i = 0; i < 32; ++i) w.ids.push_back((i * 37 + 11) % 64);
  const MatrixRM a = testing::ModelLogits(dir + "/src", w);
  const MatrixRM b = testing::ModelLogits(dir + "/out", w);
  ASSERT_EQ(a.size(), b.size());
  // As the fixture full-rank test: float32 factors, ~1e-6 relative.
  EXPECT_LE((a - b).cwiseAbs().maxCoeff(), 1e-4 * a.cwiseAbs().maxCoeff());
  // Dropping the bias would shift K by 0.2·O(1): far above the tolerance.
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace care::convert
