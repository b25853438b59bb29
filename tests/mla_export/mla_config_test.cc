#include "care/convert/mla_export/mla_config.h"

#include <gtest/gtest.h>

#include <cmath>

#include "care/convert/covariance.h"
#include "care/engine/families.h"

namespace care::convert::mla {
namespace {

ModelConfig Source(bool tied) {
  const std::string json = R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama",
    "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "vocab_size": 64, "max_position_embeddings": 128, "rms_norm_eps": 1e-5,
    "rope_theta": 500000.0, "bos_token_id": 1, "eos_token_id": 2,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
      "original_max_position_embeddings": 64},
    "tie_word_embeddings": )" +
                           std::string(tied ? "true" : "false") + "}";
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(json, "test", engine::Families());
  EXPECT_TRUE(c.ok()) << c.status();
  return *c;
}

std::vector<MlaLayer> Layers(const ModelConfig& c, int64_t rope, int64_t rank) {
  std::srand(3);
  const MatrixRM x = MatrixRM::Random(200, c.hidden_size);
  CovarianceAccumulator acc(c.hidden_size);
  EXPECT_TRUE(acc.Add(x).ok());
  const LayerStatistics stats{acc.Covariance(), acc.MeanAbs(), acc.tokens()};
  std::vector<MlaLayer> out;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    LayerWeights w{MatrixRM::Random(c.hidden_size, c.kv_width()),
                   MatrixRM::Random(c.hidden_size, c.kv_width()),
                   {},
                   {}};
    MlaLayerOptions o;
    o.num_heads = c.num_attention_heads;
    o.rope = {c.num_key_value_heads, c.head_dim, rope, 1};
    o.kv_lora_rank = rank;
    absl::StatusOr<MlaLayer> m = ExportLayer(w, stats, o);
    EXPECT_TRUE(m.ok()) << m.status();
    out.push_back(*m);
  }
  return out;
}

TEST(MlaConfigTest, WritesEveryDeepseekV3KeyForAnAllDenseMlaModel) {
  for (bool tied : {true, false}) {
    const ModelConfig src = Source(tied);
    absl::StatusOr<nlohmann::json> j = ExportConfigJson(
        src, Layers(src, 4, 12), {"care", "kv_save=0.5", 0.01});
    ASSERT_TRUE(j.ok()) << j.status();
    // Every DeepseekV3Config argument (transformers), explicitly.
    for (const char* key : {"vocab_size",
                            "hidden_size",
                            "intermediate_size",
                            "moe_intermediate_size",
                            "num_hidden_layers",
                            "num_attention_heads",
                            "num_key_value_heads",
                            "n_shared_experts",
                            "n_routed_experts",
                            "routed_scaling_factor",
                            "kv_lora_rank",
                            "q_lora_rank",
                            "qk_rope_head_dim",
                            "v_head_dim",
                            "qk_nope_head_dim",
                            "n_group",
                            "topk_group",
                            "num_experts_per_tok",
                            "first_k_dense_replace",
                            "norm_topk_prob",
                            "hidden_act",
                            "max_position_embeddings",
                            "initializer_range",
                            "rms_norm_eps",
                            "use_cache",
                            "pad_token_id",
                            "bos_token_id",
                            "eos_token_id",
                            "pretraining_tp",
                            "tie_word_embeddings",
                            "rope_theta",
                            "rope_scaling",
                            "rope_interleave",
                            "attention_bias",
                            "attention_dropout"}) {
      EXPECT_TRUE(j->contains(key)) << key;
    }
    EXPECT_EQ((*j)["model_type"], "deepseek_v3");
    EXPECT_EQ((*j)["architectures"][0], "DeepseekV3ForCausalLM");
    EXPECT_EQ((*j)["num_key_value_heads"], 4);
    EXPECT_FALSE(j->contains("head_dim"));
    EXPECT_EQ((*j)["first_k_dense_replace"], 2);
    EXPECT_TRUE((*j)["q_lora_rank"].is_null());
    EXPECT_EQ((*j)["kv_lora_rank"], 12);
    EXPECT_EQ((*j)["qk_rope_head_dim"], 4);
    EXPECT_EQ((*j)["qk_nope_head_dim"], 8);
    EXPECT_EQ((*j)["v_head_dim"], 8);
    EXPECT_EQ((*j)["rope_interleave"], true);
    EXPECT_EQ((*j)["tie_word_embeddings"], tied);
    EXPECT_EQ((*j)["rope_scaling"]["rope_type"], "llama3");
    // Output pair i rotates at source frequency i: theta^(R/d_h).
    EXPECT_NEAR((*j)["rope_theta"].get<double>(), std::pow(500000.0, 0.5),
                1e-6);
    EXPECT_EQ((*j)["care"]["layout"], "deepseek_v3");
    EXPECT_EQ((*j)["care"]["rope_dim"], 4);
    EXPECT_EQ((*j)["care"]["latent_norm_alpha_log2"].size(), 2u);
  }
}

TEST(MlaConfigTest, RefusesRopeItCannotCarry) {
  ModelConfig c = Source(true);
  c.partial_rotary_factor = 0.5;
  EXPECT_FALSE(CheckExportableRope(c).ok());
  c = Source(true);
  c.rope_scaling.type = RopeScalingType::kYarn;
  EXPECT_FALSE(CheckExportableRope(c).ok());
  EXPECT_TRUE(CheckExportableRope(Source(true)).ok());
}

}  // namespace
}  // namespace care::convert::mla
