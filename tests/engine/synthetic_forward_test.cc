// Paths the fixtures do not cover (Qwen2 biases, Qwen3 q/k norms, Qwen3-MoE,
// RoPE scalings, partial rotary, untied head, latent K/V, hooks), on small
// synthetic checkpoints written to disk, against the naive double-precision
// reference in naive_reference.cc and against exact identities.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "care/compute/registry.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/kv_projector.h"
#include "care/engine/perplexity.h"
#include "care/engine/synthetic_model.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"
#include "naive_reference.h"
#include "support/fixtures.h"

namespace care::engine {
namespace {

using nlohmann::json;

constexpr int64_t kWindows = 2;
constexpr int64_t kSeqLen = 12;
// float32 against double on models of width <= 48 with O(1) activations
// (fan-in scaled weights): rounding stays near 1e-6 relative per op, a few
// hundred ops deep; 2e-4 absolute on O(1..10) logits has >10x headroom while
// any wrong formula (a RoPE pair, a bias, a norm) moves logits by >1e-2.
constexpr double kTolerance = 2e-4;

json BaseConfig(const std::string& type) {
  return {{"architectures", {"X"}},
          {"model_type", type},
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
          {"attention_bias", false},
          {"bos_token_id", 1},
          {"eos_token_id", 2}};
}

json MoeConfig() {
  json j = BaseConfig("qwen3_moe");
  j["num_hidden_layers"] = 3;
  j["num_experts"] = 4;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 24;
  j["norm_topk_prob"] = true;
  j["decoder_sparse_step"] = 1;
  j["mlp_only_layers"] = {1};
  return j;
}

SyntheticOptions TestWeights(uint64_t seed = 7) {
  return {.seed = seed,
          .fan_in_scaling = true,
          .embedding_std = 1.0f,
          .norm_jitter = 0.2f,
          .bias_std = 0.2f};
}

struct Written {
  std::string dir;
  io::Model model;
};

// Writes the checkpoint to disk with io's writer and opens it again.
Written Write(const json& config, const SyntheticOptions& options,
              const std::string& name) {
  const std::string dir =
      ::care::testing::ProgramTempDir("engine_synth") + "/" + name;
  const absl::Status st =
      WriteSyntheticModel(config, dir, io::DType::kF32, options);
  EXPECT_TRUE(st.ok()) << st;
  auto model = io::OpenModel(dir, ::care::engine::Families());
  EXPECT_TRUE(model.ok()) << model.status();
  return {dir, std::move(model).value()};
}

// The engine on the test device (CARE_TEST_DEVICE, default cpu).
EngineOptions Options() {
  EngineOptions o;
  o.device = care::testing::TestDevice();
  return o;
}

// Activations a hook received, copied to the host.
MatrixRM Host(const compute::Matrix& m) {
  auto backend = compute::SharedBackend(care::testing::TestDevice());
  EXPECT_TRUE(backend.ok()) << backend.status();
  auto host = DownloadMatrix(**backend, m);
  EXPECT_TRUE(host.ok()) << host.status();
  return *std::move(host);
}

TokenWindows Windows(int64_t vocab) {
  TokenWindows w{.num_windows = kWindows, .seq_len = kSeqLen, .ids = {}};
  for (int64_t i = 0; i < kWindows * kSeqLen; ++i) {
    w.ids.push_back(static_cast<int32_t>((i * 37 + 11) % vocab));
  }
  return w;
}

MatrixRM EngineLogits(const ModelConfig& c, const TensorSource& s,
                      const LayerHooks& hooks = {}) {
  auto fwd = LayerwiseForward::Create(c, s, Windows(c.vocab_size), Options());
  EXPECT_TRUE(fwd.ok()) << fwd.status();
  const absl::Status st = (*fwd)->RunLayers((*fwd)->num_layers(), hooks);
  EXPECT_TRUE(st.ok()) << st;
  auto logits = (*fwd)->Logits();
  EXPECT_TRUE(logits.ok()) << logits.status();
  return *logits;
}

// Max |engine - naive| over both windows.
double ErrorAgainstNaive(const io::Model& m) {
  const MatrixRM logits = EngineLogits(m.config, *m.weights);
  const TokenWindows w = Windows(m.config.vocab_size);
  double err = 0.0, scale = 0.0;
  for (int64_t win = 0; win < kWindows; ++win) {
    const std::vector<int32_t> ids(w.ids.begin() + win * kSeqLen,
                                   w.ids.begin() + (win + 1) * kSeqLen);
    const auto ref = testing::NaiveForward(m.config, *m.weights, ids);
    for (int64_t t = 0; t < kSeqLen; ++t) {
      for (int64_t v = 0; v < m.config.vocab_size; ++v) {
        err = std::max(
            err, std::abs(logits(win * kSeqLen + t, v) - ref.logits[t][v]));
        scale = std::max(scale, std::abs(ref.logits[t][v]));
      }
    }
  }
  EXPECT_GT(scale, 0.5);  // logits are not trivially small
  return err;
}

double MaxDiff(const MatrixRM& a, const MatrixRM& b) {
  EXPECT_EQ(a.rows(), b.rows());
  EXPECT_EQ(a.cols(), b.cols());
  return (a - b).cwiseAbs().maxCoeff();
}

TEST(SyntheticForwardTest, LlamaLlama3RopeUntiedHeadMatchesNaive) {
  json j = BaseConfig("llama");
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 16}};
  EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "llama").model),
            kTolerance);
}

TEST(SyntheticForwardTest, Qwen2BiasesTiedLinearRopeMatchesNaive) {
  json j = BaseConfig("qwen2");
  j["attention_bias"] = true;
  j["tie_word_embeddings"] = true;
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "qwen2").model),
            kTolerance);
}

TEST(SyntheticForwardTest, LlamaAttentionBiasWithOutputBiasMatchesNaive) {
  json j = BaseConfig("llama");
  j["attention_bias"] = true;
  EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "llama_bias").model),
            kTolerance);
}

TEST(SyntheticForwardTest, MistralMatchesNaiveAndRefusesPastSlidingWindow) {
  json j = BaseConfig("mistral");
  j["sliding_window"] = 4096;
  EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "mistral").model),
            kTolerance);
  j["sliding_window"] = kSeqLen - 1;  // windows of kSeqLen exceed it
  Written w = Write(j, TestWeights(), "mistral_sw");
  auto fwd =
      LayerwiseForward::Create(w.model.config, *w.model.weights,
                               Windows(w.model.config.vocab_size), Options());
  EXPECT_EQ(fwd.status().code(), absl::StatusCode::kUnimplemented);
}

TEST(SyntheticForwardTest, Qwen3NormsYarnPartialRotaryMatchesNaive) {
  json j = BaseConfig("qwen3");
  j["partial_rotary_factor"] = 0.5;
  j["rope_scaling"] = {{"rope_type", "yarn"},
                       {"factor", 4.0},
                       {"original_max_position_embeddings", 16}};
  EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "qwen3").model),
            kTolerance);
}

TEST(SyntheticForwardTest, Qwen3MoeMatchesNaive) {
  for (bool norm_topk : {true, false}) {
    json j = MoeConfig();
    j["norm_topk_prob"] = norm_topk;
    EXPECT_LE(ErrorAgainstNaive(Write(j, TestWeights(), "moe").model),
              kTolerance)
        << "norm_topk_prob " << norm_topk;
  }
}

TEST(SyntheticForwardTest, MoeWithOneExpertTop1EqualsDenseMlp) {
  // A single expert with routing weight softmax(one logit) = 1 is the dense
  // MLP: copy qwen3's dense MLP weights into expert 0.
  json dense_json = BaseConfig("qwen3");
  Written dense = Write(dense_json, TestWeights(), "dense");
  json moe_json = BaseConfig("qwen3_moe");
  moe_json["num_experts"] = 1;
  moe_json["num_experts_per_tok"] = 1;
  moe_json["moe_intermediate_size"] = 48;
  moe_json["norm_topk_prob"] = false;
  auto moe_config =
      ParseModelConfig(moe_json.dump(), "moe", ::care::engine::Families());
  ASSERT_TRUE(moe_config.ok()) << moe_config.status();
  InMemoryTensorSource moe;
  for (const std::string& name : dense.model.weights->Names()) {
    auto t = dense.model.weights->LoadF32(name);
    ASSERT_TRUE(t.ok());
    std::string n = name;
    const auto pos = n.find(".mlp.");
    if (pos != std::string::npos) n.insert(pos + 5, "experts.0.");
    moe.Add(n, *t);
  }
  for (int64_t l = 0; l < 2; ++l) {
    Tensor router;
    router.shape = {1, 32};
    router.data.assign(32, 0.3f);
    moe.Add(io::names::Router(l), router);
  }
  const double diff =
      MaxDiff(EngineLogits(dense.model.config, *dense.model.weights),
              EngineLogits(*moe_config, moe));
  EXPECT_LE(diff, 1e-5);  // identical arithmetic up to the 1.0f weight
}

// Logits of `scaled` and of the same weights with default RoPE.
double DiffToDefaultRope(const json& rope_scaling) {
  json plain = BaseConfig("llama");
  Written base = Write(plain, TestWeights(3), "plain");
  json scaled = plain;
  scaled["rope_scaling"] = rope_scaling;
  auto config =
      ParseModelConfig(scaled.dump(), "scaled", ::care::engine::Families());
  EXPECT_TRUE(config.ok()) << config.status();
  return MaxDiff(EngineLogits(base.model.config, *base.model.weights),
                 EngineLogits(*config, *base.model.weights));
}

TEST(SyntheticForwardTest, YarnFactorOneEqualsDefaultRope) {
  EXPECT_LE(DiffToDefaultRope({{"rope_type", "yarn"},
                               {"factor", 1.0},
                               {"original_max_position_embeddings", 16}}),
            1e-6);
  // And a real factor does change the result (the test can fail).
  EXPECT_GT(DiffToDefaultRope({{"rope_type", "yarn"},
                               {"factor", 4.0},
                               {"original_max_position_embeddings", 16}}),
            1e-3);
}

TEST(SyntheticForwardTest, LinearFactorOneEqualsDefaultRope) {
  EXPECT_LE(DiffToDefaultRope({{"type", "linear"}, {"factor", 1.0}}), 1e-6);
  EXPECT_GT(DiffToDefaultRope({{"type", "linear"}, {"factor", 2.0}}), 1e-3);
}

TEST(SyntheticForwardTest, HooksSeeKvInputsAndReplaceProjection) {
  json j = BaseConfig("qwen2");
  j["attention_bias"] = true;
  Written w = Write(j, TestWeights(), "hooks");
  const ModelConfig& c = w.model.config;
  const TensorSource& s = *w.model.weights;
  std::vector<MatrixRM> seen;
  LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t layer, const compute::Matrix& x) {
    EXPECT_EQ(layer, static_cast<int64_t>(seen.size()));
    seen.push_back(Host(x));
    return absl::OkStatus();
  };
  // Full-rank latent factors K = (x·W_Kᵀ)·Iᵀ + b reproduce the dense layer.
  hooks.make_kv_projector =
      [&](int64_t layer) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
    const int64_t kv = c.kv_width();
    auto wk = s.LoadF32(io::names::KProj(layer));
    auto wv = s.LoadF32(io::names::VProj(layer));
    auto bk = s.LoadF32(io::names::KBias(layer));
    auto bv = s.LoadF32(io::names::VBias(layer));
    if (!wk.ok() || !wv.ok() || !bk.ok() || !bv.ok()) {
      return absl::InternalError("missing k/v weights");
    }
    return std::make_unique<LatentKvProjector>(
        MatrixRM(wk->matrix()), MatrixRM::Identity(kv, kv),
        MatrixRM(wv->matrix()), MatrixRM::Identity(kv, kv),
        Eigen::RowVectorXf(bk->matrix()), Eigen::RowVectorXf(bv->matrix()));
  };
  const MatrixRM hooked = EngineLogits(c, s, hooks);
  EXPECT_LE(MaxDiff(hooked, EngineLogits(c, s)), 1e-5);
  ASSERT_EQ(seen.size(), 2u);
  const TokenWindows win = Windows(c.vocab_size);
  const std::vector<int32_t> second(win.ids.begin() + kSeqLen, win.ids.end());
  const auto ref = testing::NaiveForward(c, s, second);
  for (int64_t l = 0; l < 2; ++l) {
    ASSERT_EQ(seen[l].rows(), kWindows * kSeqLen);
    ASSERT_EQ(seen[l].cols(), c.hidden_size);
    for (int64_t t = 0; t < kSeqLen; ++t) {
      for (int64_t i = 0; i < c.hidden_size; ++i) {
        EXPECT_NEAR(seen[l](kSeqLen + t, i), ref.kv_input[l][t][i], 1e-4);
      }
    }
  }
  // A projector that fails stops the pass with the layer named.
  hooks.on_kv_input = nullptr;
  hooks.make_kv_projector =
      [](int64_t layer) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
    if (layer == 1) return absl::InternalError("boom");
    return nullptr;
  };
  auto fwd = LayerwiseForward::Create(c, s, Windows(c.vocab_size), Options());
  ASSERT_TRUE(fwd.ok());
  const absl::Status st = (*fwd)->RunLayers(2, hooks);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("layer 1"), std::string::npos) << st;
}

TEST(SyntheticForwardTest, ObserveKvInputIsTheLayersKvInputAlone) {
  Written w = Write(BaseConfig("llama"), TestWeights(), "observe");
  const ModelConfig& c = w.model.config;
  const TensorSource& s = *w.model.weights;
  // Reference: layer 1's k/v input as a full RunLayer hands it over.
  std::vector<MatrixRM> seen;
  LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t, const compute::Matrix& x) {
    seen.push_back(Host(x));
    return absl::OkStatus();
  };
  auto full = LayerwiseForward::Create(c, s, Windows(c.vocab_size), Options());
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE((*full)->RunLayers(2, hooks).ok());
  ASSERT_EQ(seen.size(), 2u);
  const MatrixRM reference = seen[1];
  // The same from ObserveKvInput after layer 0: bit-identical (same norm
  // code on the same hidden states), and the pass does not advance.
  auto fwd = LayerwiseForward::Create(c, s, Windows(c.vocab_size), Options());
  ASSERT_TRUE(fwd.ok());
  ASSERT_TRUE((*fwd)->RunLayers(1, {}).ok());
  const MatrixRM before = Host((*fwd)->hidden());
  seen.clear();
  int64_t observed_layer = -1;
  hooks.on_kv_input = [&](int64_t layer, const compute::Matrix& x) {
    observed_layer = layer;
    seen.push_back(Host(x));
    return absl::OkStatus();
  };
  ASSERT_TRUE((*fwd)->ObserveKvInput(hooks).ok());
  EXPECT_EQ(observed_layer, 1);
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(MaxDiff(seen[0], reference), 0.0);
  EXPECT_EQ((*fwd)->next_layer(), 1);
  EXPECT_EQ(MaxDiff(Host((*fwd)->hidden()), before), 0.0);
  // A failing hook names the layer; past the last layer it is refused.
  hooks.on_kv_input = [](int64_t, const compute::Matrix&) {
    return absl::InternalError("boom");
  };
  const absl::Status st = (*fwd)->ObserveKvInput(hooks);
  EXPECT_NE(st.message().find("layer 1"), std::string::npos) << st;
  ASSERT_TRUE((*fwd)->RunLayers(2, {}).ok());
  EXPECT_EQ((*fwd)->ObserveKvInput(hooks).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(SyntheticForwardTest, LatentCheckpointMatchesNaive) {
  json j = BaseConfig("qwen2");
  j["attention_bias"] = true;
  j["care"] = {{"rank_k", {5, 16}}, {"rank_v", {7, 3}}};
  Written w = Write(j, TestWeights(), "latent");
  ASSERT_TRUE(w.model.config.latent.has_value());
  EXPECT_LE(ErrorAgainstNaive(w.model), kTolerance);
}

TEST(SyntheticForwardTest, PartialRunAndLayerOutputHook) {
  Written w = Write(BaseConfig("qwen3"), TestWeights(), "partial");
  const ModelConfig& c = w.model.config;
  std::vector<MatrixRM> outputs;
  LayerHooks hooks;
  hooks.on_layer_output = [&](int64_t, const compute::Matrix& h) {
    outputs.push_back(Host(h));
    return absl::OkStatus();
  };
  auto fwd = LayerwiseForward::Create(c, *w.model.weights,
                                      Windows(c.vocab_size), Options());
  ASSERT_TRUE(fwd.ok());
  EXPECT_FALSE((*fwd)->Logits().ok());  // layers not run yet
  ASSERT_TRUE((*fwd)->RunLayers(1, hooks).ok());
  EXPECT_EQ((*fwd)->next_layer(), 1);
  ASSERT_EQ(outputs.size(), 1u);
  EXPECT_EQ(MaxDiff(outputs[0], *(*fwd)->HiddenHost()), 0.0);
  ASSERT_TRUE((*fwd)->RunLayers(2, hooks).ok());
  EXPECT_FALSE((*fwd)->RunLayer().ok());  // past the last layer
  EXPECT_EQ(outputs.size(), 2u);
}

TEST(SyntheticForwardTest, ErrorsNameTheProblem) {
  Written w = Write(BaseConfig("llama"), TestWeights(), "errors");
  ModelConfig c = w.model.config;
  TokenWindows bad = Windows(c.vocab_size);
  bad.ids[5] = static_cast<int32_t>(c.vocab_size);
  auto fwd = LayerwiseForward::Create(c, *w.model.weights, bad, Options());
  ASSERT_FALSE(fwd.ok());
  EXPECT_NE(fwd.status().message().find("position 5"), std::string::npos);

  InMemoryTensorSource partial;
  for (const std::string& n : w.model.weights->Names()) {
    if (n != io::names::OProj(1)) partial.Add(n, *w.model.weights->LoadF32(n));
  }
  auto f2 =
      LayerwiseForward::Create(c, partial, Windows(c.vocab_size), Options());
  ASSERT_TRUE(f2.ok());
  const absl::Status st = (*f2)->RunLayers(2);
  EXPECT_EQ(st.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(st.message().find("model.layers.1.self_attn.o_proj.weight"),
            std::string::npos)
      << st;

  // The family, not the model_type string, picks the forward: a config
  // without one (not parsed with engine::Families()) is refused by name.
  c.model_type = "gpt2";
  c.family = nullptr;
  auto f3 =
      LayerwiseForward::Create(c, *w.model.weights, Windows(64), Options());
  ASSERT_FALSE(f3.ok());
  EXPECT_NE(f3.status().message().find("'gpt2' has no forward"),
            std::string::npos)
      << f3.status();
}

TEST(PerplexityWindowsTest, PlainAndBosLayouts) {
  std::vector<int32_t> stream(20);
  for (int i = 0; i < 20; ++i) stream[i] = 100 + i;
  auto p1 = MakeEvalWindows(stream, {.seq_len = 6, .start = 2, .bos = {}});
  ASSERT_TRUE(p1.ok());
  EXPECT_EQ(p1->inputs.num_windows, 3);  // 18 tokens / 6
  EXPECT_EQ(p1->inputs.seq_len, 5);
  EXPECT_EQ(p1->inputs.ids[0], 102);
  EXPECT_EQ(p1->targets[0], 103);
  EXPECT_EQ(p1->inputs.ids[5], 108);  // window 1 starts at 2 + 6
  EXPECT_EQ(p1->targets[9], 113);     // last target of window 1
  auto p2 = MakeEvalWindows(stream, {.seq_len = 6, .max_windows = 2, .bos = 1});
  ASSERT_TRUE(p2.ok());
  EXPECT_EQ(p2->inputs.num_windows, 2);
  const std::vector<int32_t> in0(p2->inputs.ids.begin(),
                                 p2->inputs.ids.begin() + 5);
  const std::vector<int32_t> tg0(p2->targets.begin(), p2->targets.begin() + 5);
  EXPECT_EQ(in0, (std::vector<int32_t>{1, 100, 101, 102, 103}));
  EXPECT_EQ(tg0, (std::vector<int32_t>{100, 101, 102, 103, 104}));
  EXPECT_EQ(p2->inputs.ids[5], 1);
  EXPECT_EQ(p2->targets[5], 105);  // chunk 1 = stream[5..10)
  EXPECT_FALSE(MakeEvalWindows(stream, {.seq_len = 1, .bos = {}}).ok());
  EXPECT_FALSE(MakeEvalWindows(stream, {.seq_len = 30, .bos = {}}).ok());
}

}  // namespace
}  // namespace care::engine
