// The deepseek_v3 family against the float64 reference written from
// transformers' DeepSeek-V3 source (deepseek_v3_reference.cc), on small
// synthetic checkpoints written to disk: both q paths, both RoPE layouts,
// every scaling, biases, dense + group-routed MoE layers, tied head, BF16 /
// F16 / sharded files; and the config rules (defaults of absent keys, the
// configs transformers cannot run).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/status_macros.h"
#include "care/convert/pipeline.h"
#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "care/engine/kv_projector.h"
#include "care/engine/synthetic_model.h"
#include "care/io/checkpoint.h"
#include "care/io/deepseek_v3_config.h"
#include "care/io/model.h"
#include "care/io/model_config.h"
#include "deepseek_v3_reference.h"
#include "support/fixtures.h"

namespace care::engine {
namespace {

using nlohmann::json;

constexpr int64_t kWindows = 2;
constexpr int64_t kSeqLen = 12;
// float32 engine against the float64 reference on the same stored weights
// (BF16/F16 files are read as the same values by both). Widths <= 64 with
// fan-in scaled weights keep activations O(1); each op rounds at ~6e-8
// relative and the deepest path is ~40 ops (3 layers of norm, 3 chained
// projections, softmax, 2 MoE GEMMs), so logits of O(1..10) agree to ~1e-5.
// 2e-4 leaves >10x headroom, while any wrong rule (a rope pair, the latent
// eps, the softmax scale, a routed expert) moves logits by > 1e-2 (checked
// by the perturbation tests below).
constexpr double kTolerance = 2e-4;

json Tiny() {
  auto j = PresetConfigJson("deepseek-v3-tiny");
  EXPECT_TRUE(j.ok()) << j.status();
  return *j;
}

SyntheticOptions TestWeights(uint64_t seed = 11) {
  return {.seed = seed,
          .fan_in_scaling = true,
          .embedding_std = 1.0f,
          .norm_jitter = 0.2f,
          .bias_std = 0.2f};
}

std::string Write(const json& config, const std::string& name,
                  io::DType dtype = io::DType::kF32,
                  uint64_t shard_bytes = 5'000'000'000,
                  const SyntheticOptions& options = TestWeights()) {
  const std::string dir = ::care::testing::ProgramTempDir("dsv3") + "/" + name;
  const absl::Status st =
      WriteSyntheticModel(config, dir, dtype, options, shard_bytes);
  EXPECT_TRUE(st.ok()) << st;
  return dir;
}

TokenWindows Windows(int64_t vocab) {
  TokenWindows w{.num_windows = kWindows, .seq_len = kSeqLen, .ids = {}};
  for (int64_t i = 0; i < kWindows * kSeqLen; ++i) {
    w.ids.push_back(static_cast<int32_t>((i * 37 + 11) % vocab));
  }
  return w;
}

absl::StatusOr<MatrixRM> EngineLogits(const io::Model& m,
                                      int64_t group_tokens = 8192,
                                      const LayerHooks& hooks = {}) {
  EngineOptions o;
  o.device = care::testing::TestDevice();
  o.group_tokens = group_tokens;
  CARE_ASSIGN_OR_RETURN(
      auto fwd, LayerwiseForward::Create(m.config, *m.weights,
                                         Windows(m.config.vocab_size), o));
  CARE_RETURN_IF_ERROR(fwd->RunLayers(fwd->num_layers(), hooks));
  return fwd->Logits();
}

// Max |engine - reference| over both windows of the checkpoint in `dir`.
double ErrorAgainstReference(const std::string& dir,
                             int64_t group_tokens = 8192) {
  auto model = io::OpenModel(dir, Families());
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return 1e9;
  auto logits = EngineLogits(*model, group_tokens);
  EXPECT_TRUE(logits.ok()) << logits.status();
  if (!logits.ok()) return 1e9;
  const TokenWindows w = Windows(model->config.vocab_size);
  double err = 0.0, scale = 0.0;
  for (int64_t win = 0; win < kWindows; ++win) {
    const std::vector<int32_t> ids(w.ids.begin() + win * kSeqLen,
                                   w.ids.begin() + (win + 1) * kSeqLen);
    auto ref = care::testing::DeepseekV3ReferenceLogits(dir, ids);
    EXPECT_TRUE(ref.ok()) << ref.status();
    if (!ref.ok()) return 1e9;
    for (int64_t t = 0; t < kSeqLen; ++t) {
      for (int64_t v = 0; v < model->config.vocab_size; ++v) {
        err = std::max(
            err, std::abs((*logits)(win * kSeqLen + t, v) - (*ref)[t][v]));
        scale = std::max(scale, std::abs((*ref)[t][v]));
      }
    }
  }
  EXPECT_GT(scale, 0.5);  // logits are not trivially small
  std::printf("  max |engine - reference| = %.2e (logits up to %.1f)\n", err,
              scale);
  return err;
}

TEST(DeepseekV3ForwardTest, TinyPresetMatchesReference) {
  // q_lora, yarn with mscale = mscale_all_dim (cos/sin factor 1, softmax
  // scale × mscale²), interleaved RoPE, one dense layer, two MoE layers with
  // 4 groups of 2 experts, top-2 groups.
  EXPECT_LE(ErrorAgainstReference(Write(Tiny(), "tiny")), kTolerance);
}

TEST(DeepseekV3ForwardTest, WindowGroupsOfOneMatchReference) {
  EXPECT_LE(ErrorAgainstReference(Write(Tiny(), "groups"), kSeqLen),
            kTolerance);
}

TEST(DeepseekV3ForwardTest, QProjHalfSplitRopeBiasTiedHeadMatchesReference) {
  json j = Tiny();
  j["q_lora_rank"] = nullptr;  // q_proj
  j["rope_interleave"] = false;
  j["attention_bias"] = true;
  j["tie_word_embeddings"] = true;
  j.erase("rope_scaling");  // default RoPE
  EXPECT_LE(ErrorAgainstReference(Write(j, "qproj")), kTolerance);
}

TEST(DeepseekV3ForwardTest, LowRankQWithBiasMatchesReference) {
  json j = Tiny();
  j["attention_bias"] = true;  // q_a_proj, kv_a_proj_with_mqa, o_proj
  EXPECT_LE(ErrorAgainstReference(Write(j, "qa_bias")), kTolerance);
}

TEST(DeepseekV3ForwardTest, LinearScalingMatchesReference) {
  json j = Tiny();
  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_LE(ErrorAgainstReference(Write(j, "linear")), kTolerance);
}

TEST(DeepseekV3ForwardTest, Llama3ScalingMatchesReference) {
  json j = Tiny();
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 16}};
  EXPECT_LE(ErrorAgainstReference(Write(j, "llama3")), kTolerance);
}

TEST(DeepseekV3ForwardTest, YarnMscaleRatioAndAllDimScaleMatchReference) {
  // mscale != mscale_all_dim: cos/sin scaled by their mscale ratio, the
  // softmax scale by mscale(factor, mscale_all_dim)².
  json j = Tiny();
  j["rope_interleave"] = false;
  j["rope_scaling"] = {{"rope_type", "yarn"},
                       {"factor", 8.0},
                       {"original_max_position_embeddings", 32},
                       {"beta_fast", 16},
                       {"beta_slow", 2},
                       {"mscale", 1.0},
                       {"mscale_all_dim", 0.5}};
  EXPECT_LE(ErrorAgainstReference(Write(j, "yarn")), kTolerance);
  // Plain yarn (no mscale keys): cos/sin × (0.1 ln 8 + 1), softmax unscaled.
  j["rope_scaling"].erase("mscale");
  j["rope_scaling"].erase("mscale_all_dim");
  EXPECT_LE(ErrorAgainstReference(Write(j, "yarn_plain")), kTolerance);
}

TEST(DeepseekV3ForwardTest, UngroupedUnnormalizedNoSharedExpertsMatch) {
  json j = Tiny();
  j["n_group"] = 1;
  j["topk_group"] = 1;
  j["norm_topk_prob"] = false;
  j["n_shared_experts"] = 0;
  j["num_experts_per_tok"] = 3;
  j["routed_scaling_factor"] = 1.0;
  j["first_k_dense_replace"] = 0;  // every layer MoE
  EXPECT_LE(ErrorAgainstReference(Write(j, "ungrouped")), kTolerance);
}

TEST(DeepseekV3ForwardTest, LatentNormsKeepEps1e6WhateverRmsNormEps) {
  // rms_norm_eps reaches input/post-attention/final norms only; q_a_ and
  // kv_a_layernorm are built with DeepseekV3RMSNorm's default 1e-6. At 0.1
  // the two rules differ by ~5 % on O(1) latents, far above the tolerance.
  json j = Tiny();
  j["rms_norm_eps"] = 0.1;
  EXPECT_LE(ErrorAgainstReference(Write(j, "eps")), kTolerance);
}

TEST(DeepseekV3ForwardTest, AllDenseMatchesReference) {
  json j = Tiny();
  j["first_k_dense_replace"] = 3;  // = num_hidden_layers: no MoE
  EXPECT_LE(ErrorAgainstReference(Write(j, "dense")), kTolerance);
}

TEST(DeepseekV3ForwardTest, Bf16WeightsMatchReference) {
  EXPECT_LE(ErrorAgainstReference(Write(Tiny(), "bf16", io::DType::kBF16)),
            kTolerance);
}

TEST(DeepseekV3ForwardTest, ShardedF16MatchesReference) {
  const std::string dir = Write(Tiny(), "f16", io::DType::kF16, 20'000);
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  EXPECT_LE(ErrorAgainstReference(dir), kTolerance);
}

// The reference is sensitive to the rules the tolerance is meant to catch:
// flipping one of them moves the logits far beyond it.
TEST(DeepseekV3ForwardTest, ReferenceSeesEachRule) {
  const std::string dir = Write(Tiny(), "rules");
  auto model = io::OpenModel(dir, Families());
  ASSERT_TRUE(model.ok()) << model.status();
  auto logits = EngineLogits(*model);
  ASSERT_TRUE(logits.ok()) << logits.status();
  const TokenWindows w = Windows(model->config.vocab_size);
  const std::vector<int32_t> ids(w.ids.begin(), w.ids.begin() + kSeqLen);
  auto diff = [&](const json& changed) {
    auto c = care::testing::ParseDeepseekV3RefConfig(changed);
    EXPECT_TRUE(c.ok()) << c.status();
    auto ckpt = io::Checkpoint::Open(dir);
    EXPECT_TRUE(ckpt.ok());
    auto ref = care::testing::DeepseekV3ReferenceLogits(*c, **ckpt, ids);
    EXPECT_TRUE(ref.ok()) << ref.status();
    double d = 0;
    for (int64_t t = 0; t < kSeqLen; ++t) {
      for (int64_t v = 0; v < model->config.vocab_size; ++v) {
        d = std::max(d, std::abs((*logits)(t, v) - (*ref)[t][v]));
      }
    }
    return d;
  };
  EXPECT_LE(diff(Tiny()), kTolerance);
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, json>>{{"rope_interleave", false},
                                                 {"norm_topk_prob", false},
                                                 {"routed_scaling_factor", 1.0},
                                                 {"topk_group", 4},
                                                 {"rms_norm_eps", 1e-1}}) {
    json j = Tiny();
    j[key] = value;
    EXPECT_GT(diff(j), 50 * kTolerance) << key;
  }
  json j = Tiny();
  j["rope_scaling"]["mscale_all_dim"] = 0.0;
  EXPECT_GT(diff(j), 50 * kTolerance) << "mscale_all_dim";
}

// ---- config rules

ModelConfig Parse(const json& j) {
  auto c = ParseModelConfig(j.dump(), "config.json", Families());
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : ModelConfig{};
}

DeepseekV3Config Dsv3(const json& j) {
  const ModelConfig c = Parse(j);
  const auto* d = c.fields<DeepseekV3Config>();
  EXPECT_NE(d, nullptr);
  return d != nullptr ? *d : DeepseekV3Config{};
}

absl::Status ParseError(const json& j) {
  return ParseModelConfig(j.dump(), "config.json", Families()).status();
}

TEST(DeepseekV3ConfigTest, AbsentKeysTakeTransformersDefaults) {
  // Only what has no DeepSeek-V3 default worth keeping small... nothing:
  // an empty deepseek_v3 config is DeepSeek-V3 itself.
  const ModelConfig c = Parse({{"model_type", "deepseek_v3"}});
  ASSERT_NE(c.fields<DeepseekV3Config>(), nullptr);
  const DeepseekV3Config& d = *c.fields<DeepseekV3Config>();
  EXPECT_EQ(d.q_lora_rank, 1536);
  EXPECT_EQ(d.kv_lora_rank, 512);
  EXPECT_EQ(d.qk_nope_head_dim, 128);
  EXPECT_EQ(d.qk_rope_head_dim, 64);
  EXPECT_EQ(d.v_head_dim, 128);
  EXPECT_TRUE(d.rope_interleave);
  EXPECT_EQ(d.n_routed_experts, 256);
  EXPECT_EQ(d.n_shared_experts, 1);
  EXPECT_EQ(d.num_experts_per_tok, 8);
  EXPECT_EQ(d.moe_intermediate_size, 2048);
  EXPECT_EQ(d.n_group, 8);
  EXPECT_EQ(d.topk_group, 4);
  EXPECT_EQ(d.first_k_dense_replace, 3);
  EXPECT_TRUE(d.norm_topk_prob);
  EXPECT_DOUBLE_EQ(d.routed_scaling_factor, 2.5);
  EXPECT_DOUBLE_EQ(d.softmax_scale, 1.0 / std::sqrt(192.0));
  EXPECT_EQ(c.hidden_size, 7168);
  EXPECT_EQ(c.intermediate_size, 18432);
  EXPECT_EQ(c.num_hidden_layers, 61);
  EXPECT_EQ(c.num_attention_heads, 128);
  EXPECT_EQ(c.num_key_value_heads, 128);
  EXPECT_EQ(c.vocab_size, 129280);
  EXPECT_EQ(c.max_position_embeddings, 4096);
  EXPECT_EQ(c.head_dim, 64);  // = qk_rope_head_dim, the rotary width
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-6);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(d.kv_cache_width(), 576);
  EXPECT_FALSE(c.IsMoeLayer(2));
  EXPECT_TRUE(c.IsMoeLayer(3));
  // The raw config stays as written.
  EXPECT_FALSE(c.raw.contains("hidden_size"));
  // The test reference reads the same defaults independently.
  auto ref =
      care::testing::ParseDeepseekV3RefConfig({{"model_type", "deepseek_v3"}});
  ASSERT_TRUE(ref.ok()) << ref.status();
  EXPECT_EQ(ref->q_lora_rank, d.q_lora_rank);
  EXPECT_EQ(ref->num_key_value_heads, c.num_key_value_heads);
  EXPECT_EQ(ref->first_k_dense_replace, d.first_k_dense_replace);
}

TEST(DeepseekV3ConfigTest, PublishedDeepSeekV3Config) {
  // deepseek-ai/DeepSeek-V3's config.json (keys transformers ignores kept).
  json j = json::parse(R"({
    "architectures": ["DeepseekV3ForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "aux_loss_alpha": 0.001, "bos_token_id": 0,
    "eos_token_id": 1, "ep_size": 1, "first_k_dense_replace": 3,
    "hidden_act": "silu", "hidden_size": 7168, "initializer_range": 0.02,
    "intermediate_size": 18432, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "model_type": "deepseek_v3",
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8,
    "n_routed_experts": 256, "n_shared_experts": 1, "norm_topk_prob": true,
    "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128,
    "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64,
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
      "quant_method": "fp8", "weight_block_size": [128, 128]},
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"beta_fast": 32, "beta_slow": 1, "factor": 40,
      "mscale": 1.0, "mscale_all_dim": 1.0,
      "original_max_position_embeddings": 4096, "type": "yarn"},
    "rope_theta": 10000, "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid", "seq_aux": true, "tie_word_embeddings": false,
    "topk_group": 4, "topk_method": "noaux_tc", "torch_dtype": "bfloat16",
    "transformers_version": "4.33.1", "use_cache": true, "v_head_dim": 128,
    "vocab_size": 129280})");
  // The FP8 release is refused by name; its BF16 conversion is read.
  EXPECT_NE(ParseError(j).message().find("'quantization_config'"),
            std::string::npos);
  j.erase("quantization_config");
  const ModelConfig c = Parse(j);
  ASSERT_NE(c.fields<DeepseekV3Config>(), nullptr);
  const double m = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c.fields<DeepseekV3Config>()->softmax_scale,
              m * m / std::sqrt(192.0), 1e-15);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(KvValuesPerToken(c), 576 * 61);
  EXPECT_FALSE(c.IsMoeLayer(2));
  EXPECT_TRUE(c.IsMoeLayer(3));
}

TEST(DeepseekV3ConfigTest, NullQLoraRankMeansQProj) {
  json j = Tiny();
  j["q_lora_rank"] = nullptr;
  EXPECT_FALSE(Dsv3(j).q_lora_rank.has_value());
  j.erase("q_lora_rank");
  EXPECT_EQ(Dsv3(j).q_lora_rank, 1536);
}

TEST(DeepseekV3ConfigTest, SoftmaxScaleCarriesMscaleAllDim) {
  const ModelConfig c = Parse(Tiny());  // yarn factor 4, mscale_all_dim 1
  const double m = 0.1 * std::log(4.0) + 1.0;
  EXPECT_NEAR(c.fields<DeepseekV3Config>()->softmax_scale,
              m * m / std::sqrt(16.0), 1e-15);
  json j = Tiny();
  j["rope_scaling"]["mscale_all_dim"] = 0;
  EXPECT_NEAR(Dsv3(j).softmax_scale, 0.25, 1e-15);
}

TEST(DeepseekV3ConfigTest, TransformersV5RopeParameters) {
  json j = Tiny();
  j["rope_parameters"] = j["rope_scaling"];
  j["rope_parameters"]["rope_theta"] = 50000.0;
  j.erase("rope_scaling");
  j.erase("rope_theta");
  const ModelConfig c = Parse(j);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_DOUBLE_EQ(c.rope_theta, 50000.0);
  EXPECT_DOUBLE_EQ(c.rope_scaling.mscale_all_dim, 1.0);
}

TEST(DeepseekV3ConfigTest, RefusesWhatTransformersCannotRun) {
  json j = Tiny();
  j["head_dim"] = 16;  // != qk_rope_head_dim 8
  absl::Status st = ParseError(j);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("'head_dim'"), std::string::npos) << st;
  EXPECT_NE(st.message().find("qk_rope_head_dim"), std::string::npos) << st;
  j["head_dim"] = 8;  // equal: accepted
  EXPECT_TRUE(ParseError(j).ok());

  j = Tiny();
  j["num_key_value_heads"] = 2;
  st = ParseError(j);
  EXPECT_NE(st.message().find("'num_key_value_heads'"), std::string::npos)
      << st;
  // Absent means 128 in transformers, which 4 query heads cannot use.
  j.erase("num_key_value_heads");
  EXPECT_NE(ParseError(j).message().find("num_key_value_heads"),
            std::string::npos);

  j = Tiny();
  j["n_group"] = 8;  // groups of one expert: no top-2 per group
  EXPECT_NE(ParseError(j).message().find("'n_group'"), std::string::npos);
  j = Tiny();
  j["topk_group"] = 5;
  EXPECT_NE(ParseError(j).message().find("'topk_group'"), std::string::npos);
  j = Tiny();
  j["qk_rope_head_dim"] = 7;
  EXPECT_NE(ParseError(j).message().find("'qk_rope_head_dim'"),
            std::string::npos);
  j = Tiny();
  j["q_lora_rank"] = "big";
  EXPECT_NE(ParseError(j).message().find("'q_lora_rank'"), std::string::npos);
}

TEST(DeepseekV3ConfigTest, ExpectedTensorsNameEveryMlaAndMoeTensor) {
  json j = Tiny();
  j["attention_bias"] = true;
  const ModelConfig c = Parse(j);
  std::vector<std::string> names;
  for (const auto& t : io::ExpectedTensors(c)) names.push_back(t.name);
  for (const char* want : {
           "model.layers.0.self_attn.q_a_proj.weight",
           "model.layers.0.self_attn.q_a_proj.bias",
           "model.layers.0.self_attn.q_a_layernorm.weight",
           "model.layers.0.self_attn.q_b_proj.weight",
           "model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
           "model.layers.0.self_attn.kv_a_proj_with_mqa.bias",
           "model.layers.0.self_attn.kv_a_layernorm.weight",
           "model.layers.0.self_attn.kv_b_proj.weight",
           "model.layers.0.self_attn.o_proj.bias",
           "model.layers.0.mlp.gate_proj.weight",
           "model.layers.1.mlp.gate.weight",
           "model.layers.1.mlp.gate.e_score_correction_bias",
           "model.layers.1.mlp.experts.7.down_proj.weight",
           "model.layers.2.mlp.shared_experts.up_proj.weight",
       }) {
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  }
  for (const char* absent : {"model.layers.0.self_attn.k_proj.weight",
                             "model.layers.1.mlp.gate_proj.weight",
                             "model.layers.0.mlp.gate.weight"}) {
    EXPECT_EQ(std::find(names.begin(), names.end(), absent), names.end())
        << absent;
  }
}

// ---- engine behaviour

TEST(DeepseekV3ForwardTest, KvInputHookSeesNormalizedInputAndProjectorRefused) {
  const std::string dir = Write(Tiny(), "hooks");
  auto model = io::OpenModel(dir, Families());
  ASSERT_TRUE(model.ok()) << model.status();
  int calls = 0;
  LayerHooks hooks;
  hooks.on_kv_input = [&](int64_t, const compute::Matrix& x) {
    EXPECT_EQ(x.rows, kWindows * kSeqLen);
    EXPECT_EQ(x.cols, 64);
    ++calls;
    return absl::OkStatus();
  };
  ASSERT_TRUE(EngineLogits(*model, 8192, hooks).ok());
  EXPECT_EQ(calls, 3);
  LayerHooks replace;
  replace.make_kv_projector =
      [](int64_t) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
    return std::unique_ptr<KvProjector>(nullptr);
  };
  EXPECT_TRUE(EngineLogits(*model, 8192, replace).ok());  // null: keep MLA
  // A GQA-style K/V projector has no place in latent attention.
  class Unused : public KvProjector {
   public:
    absl::Status Project(compute::Backend&, const compute::Matrix&,
                         compute::Matrix*, compute::Matrix*) const override {
      return absl::InternalError("must not run");
    }
  };
  replace.make_kv_projector =
      [](int64_t) -> absl::StatusOr<std::unique_ptr<KvProjector>> {
    return std::make_unique<Unused>();
  };
  EXPECT_EQ(EngineLogits(*model, 8192, replace).status().code(),
            absl::StatusCode::kUnimplemented);
}

TEST(DeepseekV3ForwardTest, MissingTensorIsNamed) {
  const std::string dir = Write(Tiny(), "missing");
  std::filesystem::remove(dir + "/model.safetensors");
  json j = Tiny();
  j["first_k_dense_replace"] = 3;
  const std::string dense = Write(j, "dense_as_moe");
  // A config that expects MoE layers over a dense checkpoint.
  std::filesystem::copy_file(dir + "/config.json", dense + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  auto model = io::OpenModel(dense, Families());
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("model.layers.1.mlp.gate.weight"),
            std::string::npos)
      << model.status();
}

// A DeepSeek-V3 checkpoint is already MLA: conversion refuses it up front,
// naming the model type and the field.
TEST(DeepseekV3ConvertTest, ConversionIsRefused) {
  const std::string dir = Write(Tiny(), "convert_src");
  convert::ConvertOptions o;
  o.model = dir;
  o.output_dir = dir + "/../convert_out";
  o.calib_data = dir + "/../no_calib.u16";  // never read
  auto r = convert::ConvertModel(o, nullptr, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("deepseek_v3"), std::string::npos)
      << r.status();
  EXPECT_NE(r.status().message().find("kv_lora_rank"), std::string::npos)
      << r.status();
  EXPECT_FALSE(std::filesystem::exists(o.output_dir));
}

// care-worker as a process: inspect reports MLA's KV width, eval's
// perplexity is the reference's.
TEST(DeepseekV3CliTest, InspectAndEvalOnTinyCheckpoint) {
  const std::string dir = Write(Tiny(), "cli", io::DType::kBF16);
  const std::string worker =
      care::testing::BinaryPath("worker/cli/care-worker");
  auto run = [&](const std::string& args) {
    const std::string out = dir + "/../cli.out";
    const int rc = std::system((worker + " " + args + " >" + out).c_str());
    EXPECT_EQ(rc, 0) << args;
    std::ifstream in(out);
    return json::parse(in, nullptr, false);
  };
  const json ins = run("inspect " + dir + " --json");
  ASSERT_FALSE(ins.is_discarded());
  EXPECT_EQ(ins["model_type"], "deepseek_v3");
  EXPECT_EQ(ins["kv_width"], 16 + 8);  // kv_lora_rank + qk_rope_head_dim
  EXPECT_EQ(ins["kv_values_per_token"], 3 * 24);
  EXPECT_EQ(ins["mla"]["q_lora_rank"], 24);

  // Two plain windows of 10 ids: each reads 9 tokens, scored on the next 9.
  constexpr int64_t T = 10, W = 2;
  std::vector<uint16_t> ids(W * T);
  for (int64_t i = 0; i < W * T; ++i) ids[i] = (i * 29 + 5) % 128;
  const std::string tokens = dir + "/../cli.u16";
  {
    std::ofstream f(tokens, std::ios::binary);
    f.write(reinterpret_cast<const char*>(ids.data()), ids.size() * 2);
  }
  const json ev = run("eval --model " + dir + " --tokens " + tokens +
                      " --seq-len 10 --json");
  ASSERT_FALSE(ev.is_discarded());
  EXPECT_EQ(ev["predictions"], W * (T - 1));
  EXPECT_EQ(ev["kv_values_per_token"], 72);
  double nll = 0;
  for (int64_t w = 0; w < W; ++w) {
    const std::vector<int32_t> in(ids.begin() + w * T,
                                  ids.begin() + w * T + T - 1);
    auto ref = care::testing::DeepseekV3ReferenceLogits(dir, in);
    ASSERT_TRUE(ref.ok()) << ref.status();
    for (int64_t t = 0; t < T - 1; ++t) {
      const auto& row = (*ref)[t];
      const double mx = *std::max_element(row.begin(), row.end());
      double z = 0;
      for (double v : row) z += std::exp(v - mx);
      nll += mx + std::log(z) - row[ids[w * T + t + 1]];
    }
  }
  nll /= W * (T - 1);
  // A mean of log-softmax terms, each within the logits' tolerance.
  EXPECT_NEAR(ev["mean_nll"].get<double>(), nll, kTolerance);
}

}  // namespace
}  // namespace care::engine
