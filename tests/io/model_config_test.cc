// config.json parsing for every supported family, and the errors that name
// the field and the allowed range.
#include "care/io/model_config.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "care/engine/families.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"

namespace care {
namespace {

using nlohmann::json;

json Llama() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"hidden_size", 64},
              {"intermediate_size", 172},
              {"num_hidden_layers", 5},
              {"num_attention_heads", 8},
              {"num_key_value_heads", 4},
              {"vocab_size", 512},
              {"max_position_embeddings", 512},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},
              {"tie_word_embeddings", true},
              {"bos_token_id", 1},
              {"eos_token_id", 2},
              {"torch_dtype", "float32"}};
}

absl::StatusOr<ModelConfig> Parse(const json& j) {
  return ParseModelConfig(j.dump(), "/m/config.json",
                          ::care::engine::Families());
}

// Expects an error whose message contains every fragment.
void ExpectError(const json& j, std::initializer_list<const char*> fragments) {
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_FALSE(c.ok()) << j.dump();
  for (const char* f : fragments) {
    EXPECT_NE(c.status().message().find(f), std::string::npos)
        << "'" << f << "' not in: " << c.status().message();
  }
  EXPECT_NE(c.status().message().find("/m/config.json"), std::string::npos);
}

TEST(ModelConfigTest, Llama) {
  absl::StatusOr<ModelConfig> c = Parse(Llama());
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->architecture, "LlamaForCausalLM");
  EXPECT_EQ(c->head_dim, 8);  // 64 / 8
  EXPECT_EQ(c->kv_width(), 32);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_FALSE(c->attention_bias);
  EXPECT_FALSE(c->qk_norm);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);
  EXPECT_EQ(c->bos_token_id, 1);
  EXPECT_EQ(c->eos_token_ids, std::vector<int64_t>{2});
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_FALSE(c->latent.has_value());
  EXPECT_FALSE(c->IsMoeLayer(0));
  EXPECT_EQ(c->raw["torch_dtype"], "float32");
}

TEST(ModelConfigTest, LlamaHeadDimOverrideAndRopeScaling) {
  json j = Llama();
  j["head_dim"] = 16;
  j["eos_token_id"] = {128001, 128008, 128009};
  j["rope_scaling"] = {{"rope_type", "llama3"},
                       {"factor", 8.0},
                       {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0},
                       {"original_max_position_embeddings", 8192}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 16);
  EXPECT_EQ(c->kv_width(), 64);
  EXPECT_EQ(c->eos_token_ids.size(), 3u);
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kLinear);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 2.0);

  j["rope_scaling"] = {{"rope_type", "default"}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kNone);

  j["rope_scaling"] = nullptr;
  ASSERT_TRUE(Parse(j).ok());

  j["rope_scaling"] = {
      {"rope_type", "yarn"}, {"factor", 4.0}, {"attention_factor", 1.2}};
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->rope_scaling.type, RopeScalingType::kYarn);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 512);
  EXPECT_DOUBLE_EQ(c->rope_scaling.beta_fast, 32.0);
  EXPECT_DOUBLE_EQ(*c->rope_scaling.attention_factor, 1.2);
}

TEST(ModelConfigTest, MistralAndQwen2) {
  json j = Llama();
  j["model_type"] = "mistral";
  j["head_dim"] = nullptr;     // Mistral configs write null.
  j["attention_bias"] = true;  // Not a Mistral field: ignored.
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->head_dim, 8);
  EXPECT_FALSE(c->attention_bias);

  j = Llama();
  j["model_type"] = "qwen2";
  c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);  // Qwen2 always has q/k/v biases.
  EXPECT_FALSE(c->qk_norm);
}

TEST(ModelConfigTest, Qwen3HeadDimIsExplicitOrTransformersDefault) {
  json j = Llama();
  j["model_type"] = "qwen3";
  {
    // Absent: 128 as in transformers, not hidden_size / heads.
    absl::StatusOr<ModelConfig> d = Parse(j);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->head_dim, 128);
    EXPECT_NE(d->head_dim, d->hidden_size / d->num_attention_heads);
  }
  j["head_dim"] = 32;  // Not hidden / heads: Qwen3 decouples them.
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->qk_norm);
  EXPECT_EQ(c->head_dim, 32);
  EXPECT_EQ(c->kv_width(), 128);
  EXPECT_FALSE(c->attention_bias);
}

TEST(ModelConfigTest, Qwen3Moe) {
  json j = Llama();
  j["model_type"] = "qwen3_moe";
  j["head_dim"] = 8;
  j["num_hidden_layers"] = 6;
  j["num_experts"] = 8;
  j["num_experts_per_tok"] = 2;
  j["moe_intermediate_size"] = 32;
  j["norm_topk_prob"] = true;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->norm_topk_prob);
  // (l + 1) % 2 == 0 and l not in mlp_only_layers: layers 1 and 5.
  std::vector<int64_t> moe;
  for (int64_t l = 0; l < 6; ++l) {
    if (c->IsMoeLayer(l)) moe.push_back(l);
  }
  EXPECT_EQ(moe, (std::vector<int64_t>{1, 5}));

  std::vector<io::ExpectedTensor> expected = io::ExpectedTensors(*c);
  auto has = [&](const std::string& name, std::vector<int64_t> shape) {
    for (const auto& t : expected) {
      if (t.name == name) return t.shape == shape;
    }
    return false;
  };
  EXPECT_TRUE(has(io::names::Router(1), {8, 64}));
  EXPECT_TRUE(has(io::names::ExpertDown(5, 7), {64, 32}));
  EXPECT_TRUE(has(io::names::GateProj(3), {172, 64}));
  EXPECT_FALSE(has(io::names::GateProj(1), {172, 64}));
  EXPECT_TRUE(has(io::names::QNorm(0), {8}));

  j["num_experts_per_tok"] = 9;
  ExpectError(j, {"num_experts_per_tok", "exceeds num_experts"});
  j["num_experts_per_tok"] = 2;
  j["mlp_only_layers"] = {6};
  ExpectError(j, {"mlp_only_layers", "6", "[0, 6)"});
  j.erase("mlp_only_layers");
  j.erase("moe_intermediate_size");
  ExpectError(j, {"moe_intermediate_size", "missing"});
}

TEST(ModelConfigTest, LatentBlock) {
  json j = Llama();
  j["architectures"] = {"CareLlamaForCausalLM"};
  j["care"] = {{"rank_k", {4, 8, 16, 32, 1}}, {"rank_v", {2, 2, 2, 2, 2}}};
  absl::StatusOr<ModelConfig> c = Parse(j);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->latent.has_value());
  EXPECT_EQ(c->latent->rank_k, (std::vector<int>{4, 8, 16, 32, 1}));
  EXPECT_EQ(c->latent->rank_v[4], 2);
  std::vector<io::ExpectedTensor> expected = io::ExpectedTensors(*c);
  bool found = false;
  for (const auto& t : expected) {
    EXPECT_NE(t.name, io::names::KProj(0));
    if (t.name == io::names::KBProj(2)) {
      found = true;
      EXPECT_EQ(t.shape, (std::vector<int64_t>{32, 16}));  // [g*d_h, r_K]
    }
  }
  EXPECT_TRUE(found);

  j["care"]["rank_k"] = {4, 8};
  ExpectError(j, {"care.rank_k", "2 entries", "num_hidden_layers is 5"});
  j["care"]["rank_k"] = {4, 8, 16, 33, 1};
  ExpectError(j, {"care.rank_k", "layer 3", "33", "[1, 32]"});
  j["care"].erase("rank_k");
  ExpectError(j, {"care.rank_k", "missing"});
}

// config.json files as published for real models (abridged to the fields
// transformers writes; values as in the hub repos).
TEST(ModelConfigTest, RealWorldConfigs) {
  absl::StatusOr<ModelConfig> llama =
      ParseModelConfig(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 131072,
    "mlp_bias": false, "model_type": "llama", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 8, "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192,
      "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.0.dev0",
    "use_cache": true, "vocab_size": 128256})",
                       "llama-3.1-8b", ::care::engine::Families());
  ASSERT_TRUE(llama.ok()) << llama.status();
  EXPECT_EQ(llama->kv_width(), 1024);  // 8 KV heads * 128
  EXPECT_EQ(llama->rope_scaling.type, RopeScalingType::kLlama3);
  EXPECT_EQ(io::ExpectedTensors(*llama).size(), 32u * 9 + 3);

  absl::StatusOr<ModelConfig> moe =
      ParseModelConfig(R"({
    "architectures": ["Qwen3MoeForCausalLM"], "attention_bias": false,
    "attention_dropout": 0.0, "bos_token_id": 151643,
    "decoder_sparse_step": 1, "eos_token_id": 151645, "head_dim": 128,
    "hidden_act": "silu", "hidden_size": 2048, "initializer_range": 0.02,
    "intermediate_size": 6144, "max_position_embeddings": 40960,
    "max_window_layers": 48, "mlp_only_layers": [],
    "model_type": "qwen3_moe", "moe_intermediate_size": 768,
    "norm_topk_prob": true, "num_attention_heads": 32, "num_experts": 128,
    "num_experts_per_tok": 8, "num_hidden_layers": 48,
    "num_key_value_heads": 4, "output_router_logits": false,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000.0,
    "router_aux_loss_coef": 0.001, "sliding_window": null,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})",
                       "qwen3-30b-a3b", ::care::engine::Families());
  ASSERT_TRUE(moe.ok()) << moe.status();
  EXPECT_EQ(moe->kv_width(), 512);
  for (int64_t l = 0; l < 48; ++l) EXPECT_TRUE(moe->IsMoeLayer(l));
  // Per layer: 2 norms, q/k/v/o, q/k norms, router, 128 experts x 3.
  EXPECT_EQ(io::ExpectedTensors(*moe).size(), 48u * (2 + 4 + 2 + 1 + 384) + 3);

  absl::StatusOr<ModelConfig> qwen2 =
      ParseModelConfig(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "hidden_act": "silu",
    "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 32768,
    "max_window_layers": 28, "model_type": "qwen2",
    "num_attention_heads": 28, "num_hidden_layers": 28,
    "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0, "sliding_window": 131072,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 152064})",
                       "qwen2.5-7b", ::care::engine::Families());
  ASSERT_TRUE(qwen2.ok()) << qwen2.status();
  EXPECT_EQ(qwen2->head_dim, 128);  // 3584 / 28
  EXPECT_TRUE(qwen2->attention_bias);

  absl::StatusOr<ModelConfig> mistral =
      ParseModelConfig(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1,
    "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
    "sliding_window": 4096, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32000})",
                       "mistral-7b", ::care::engine::Families());
  ASSERT_TRUE(mistral.ok()) << mistral.status();
  EXPECT_EQ(mistral->kv_width(), 1024);
}

TEST(ModelConfigTest, Errors) {
  json j = Llama();
  j["model_type"] = "gpt2";
  ExpectError(j, {"'gpt2'", "llama, mistral, qwen2, qwen3, qwen3_moe"});
  j = Llama();
  j.erase("model_type");
  ExpectError(j, {"model_type", "not supported"});
  j = Llama();
  j.erase("hidden_size");
  ExpectError(j, {"'hidden_size'", "missing"});
  j = Llama();
  j["num_hidden_layers"] = 0;
  ExpectError(j, {"'num_hidden_layers'", "> 0"});
  j = Llama();
  j["vocab_size"] = "512";
  ExpectError(j, {"'vocab_size'", "integer"});
  j = Llama();
  j["num_key_value_heads"] = 3;
  ExpectError(j, {"num_key_value_heads", "divide"});
  j = Llama();
  j["hidden_size"] = 60;
  ExpectError(j, {"hidden_size", "divisible"});
  j = Llama();
  j["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  ExpectError(j, {"'dynamic'", "default, linear, llama3, yarn"});
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  ExpectError(j, {"rope_scaling.low_freq_factor", "missing"});
  j["rope_scaling"] = {{"type", "linear"}, {"factor", -1.0}};
  ExpectError(j, {"rope_scaling.factor", "> 0"});
  j = Llama();
  j["hidden_act"] = "gelu";
  ExpectError(j, {"hidden_act", "silu"});
  j = Llama();
  j["tie_word_embeddings"] = 1;
  ExpectError(j, {"tie_word_embeddings", "true or false"});
  j = Llama();
  j["partial_rotary_factor"] = 1.5;
  ExpectError(j, {"partial_rotary_factor", "(0, 1]"});
  EXPECT_FALSE(ParseModelConfig("{not json", "/m/config.json",
                                ::care::engine::Families())
                   .ok());
  EXPECT_FALSE(
      ParseModelConfig("[1, 2]", "/m/config.json", ::care::engine::Families())
          .ok());
  EXPECT_EQ(LoadModelConfig("/nonexistent/dir", ::care::engine::Families())
                .status()
                .code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace care
