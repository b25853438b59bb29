// The model family registry (io/model_family.h, engine/families.cc): every
// family the engine runs is found by its model_type and owns the facts that
// differ between architectures; and a family whose attention is not
// Llama-shaped (its own config fields, K/V widths and tensors, and a
// converter that refuses it) is expressible with the io descriptor alone,
// without the engine knowing it.
#include "care/io/model_family.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/decoder_family.h"
#include "care/engine/families.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"

namespace care {
namespace {

using nlohmann::json;

json Base(const std::string& model_type) {
  return json{{"model_type", model_type},
              {"hidden_size", 64},
              {"intermediate_size", 96},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"vocab_size", 100},
              {"attention_bias", true},
              {"num_experts", 4},
              {"num_experts_per_tok", 2},
              {"moe_intermediate_size", 16},
              {"sliding_window", 1024}};
}

TEST(ModelFamilyTest, EveryEngineFamilyParsesToItselfWithItsOwnRules) {
  std::set<std::string> seen;
  for (const ModelFamily* f : engine::Families()) {
    const std::string type(f->model_type());
    EXPECT_TRUE(seen.insert(type).second) << "duplicate " << type;
    json j = Base(type);
    // MLA: one latent K/V per query head; already latent, not convertible.
    const bool mla = type == "deepseek_v3";
    if (mla) j["num_key_value_heads"] = 4;
    absl::StatusOr<ModelConfig> c =
        ParseModelConfig(j.dump(), type, engine::Families());
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->family, f);
    EXPECT_TRUE(engine::ForwardOf(*c).ok()) << type;
    EXPECT_EQ(f->CheckConvertible(*c).ok(), !mla) << type;
  }
  EXPECT_EQ(seen, (std::set<std::string>{"llama", "mistral", "qwen2", "qwen3",
                                         "qwen3_moe", "deepseek_v3"}));
}

// The facts the registry moved out of string comparisons, one per family.
TEST(ModelFamilyTest, FamilyFactsComeFromTheFamily) {
  auto parse = [](const std::string& type) {
    absl::StatusOr<ModelConfig> c =
        ParseModelConfig(Base(type).dump(), type, engine::Families());
    EXPECT_TRUE(c.ok()) << c.status();
    return *c;
  };
  const ModelConfig llama = parse("llama"), mistral = parse("mistral"),
                    qwen2 = parse("qwen2"), qwen3 = parse("qwen3"),
                    moe = parse("qwen3_moe");
  // o_proj bias: attention_bias for Llama and Qwen3, never for Qwen2;
  // Mistral has no biases at all.
  EXPECT_TRUE(llama.o_proj_bias && llama.attention_bias);
  EXPECT_TRUE(qwen2.attention_bias);
  EXPECT_FALSE(qwen2.o_proj_bias);
  EXPECT_FALSE(mistral.attention_bias || mistral.o_proj_bias);
  EXPECT_TRUE(qwen3.o_proj_bias);
  // Only Mistral keeps the sliding window (the engine refuses beyond it).
  EXPECT_EQ(mistral.sliding_window, 1024);
  EXPECT_FALSE(llama.sliding_window.has_value());
  EXPECT_FALSE(qwen2.sliding_window.has_value());
  // q/k norms and the 128 head_dim default are Qwen3's.
  EXPECT_FALSE(llama.qk_norm);
  EXPECT_TRUE(qwen3.qk_norm && moe.qk_norm);
  EXPECT_EQ(llama.head_dim, 16);  // 64 / 4
  EXPECT_EQ(qwen3.head_dim, 128);
  // Only qwen3_moe reads the MoE fields and has MoE layers.
  EXPECT_EQ(llama.num_experts, 0);
  EXPECT_FALSE(llama.IsMoeLayer(0));
  EXPECT_TRUE(moe.IsMoeLayer(0) && moe.IsMoeLayer(1));
  bool has_router = false;
  for (const io::ExpectedTensor& t : io::ExpectedTensors(moe)) {
    has_router |= t.name == io::names::Router(1);
  }
  EXPECT_TRUE(has_router);
}

// A toy MLA-style family, written against io alone: its own fields, K and
// V of different widths from a shared latent, and a converter that says no.
struct ToyMlaFields : FamilyFields {
  int64_t kv_lora_rank = 0;
  int64_t v_head_dim = 0;
};

class ToyMlaFamily : public ModelFamily {
 public:
  absl::string_view model_type() const override { return "toy_mla"; }
  absl::Status ParseFields(const ConfigReader& r,
                           ModelConfig& c) const override {
    auto fields = std::make_shared<ToyMlaFields>();
    CARE_ASSIGN_OR_RETURN(fields->kv_lora_rank, r.PositiveInt("kv_lora_rank"));
    CARE_ASSIGN_OR_RETURN(fields->v_head_dim, r.PositiveInt("v_head_dim"));
    c.family_fields = std::move(fields);
    return absl::OkStatus();
  }
  void AppendLayerTensors(const ModelConfig& c, int64_t l,
                          std::vector<io::ExpectedTensor>& out) const override {
    const ToyMlaFields& f = *c.fields<ToyMlaFields>();
    const int64_t d = c.hidden_size, h = c.num_attention_heads;
    out.push_back({io::names::Layer(l, "self_attn.kv_a_proj.weight"),
                   {f.kv_lora_rank, d}});
    // K [h·d_h] and V [h·v_head_dim] from the same latent.
    out.push_back({io::names::Layer(l, "self_attn.kv_b_proj.weight"),
                   {h * (c.head_dim + f.v_head_dim), f.kv_lora_rank}});
  }
  absl::Status CheckConvertible(const ModelConfig&) const override {
    return absl::InvalidArgumentError(
        "attention is already multi-head latent attention");
  }
};

TEST(ModelFamilyTest, ANonLlamaFamilyNeedsOnlyItsDescriptor) {
  const ToyMlaFamily toy;
  const ModelFamily* const families[] = {&toy};
  json j = Base("toy_mla");
  j["kv_lora_rank"] = 12;
  j["v_head_dim"] = 24;
  absl::StatusOr<ModelConfig> c =
      ParseModelConfig(j.dump(), "/toy/config.json", families);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->fields<ToyMlaFields>(), nullptr);
  EXPECT_EQ(c->fields<ToyMlaFields>()->kv_lora_rank, 12);
  EXPECT_FALSE(c->attention_bias);  // its ParseFields did not read it
  const std::vector<io::ExpectedTensor> tensors = io::ExpectedTensors(*c);
  ASSERT_EQ(tensors.size(), 1 + 2 * 2 + 2);  // embed, 2 per layer, norm, head
  EXPECT_EQ(tensors[2].shape, (std::vector<int64_t>{4 * (16 + 24), 12}));
  EXPECT_NE(c->family->CheckConvertible(*c).message().find("already"),
            std::string::npos);
  // Its own field errors name the file and field.
  j.erase("kv_lora_rank");
  absl::Status missing =
      ParseModelConfig(j.dump(), "/toy/config.json", families).status();
  EXPECT_NE(missing.message().find("/toy/config.json: field 'kv_lora_rank'"),
            std::string::npos)
      << missing;
  // The engine has no forward for it, and says so by name.
  absl::StatusOr<const engine::DecoderFamily*> forward = engine::ForwardOf(*c);
  ASSERT_FALSE(forward.ok());
  EXPECT_NE(forward.status().message().find("'toy_mla' has no forward"),
            std::string::npos)
      << forward.status();
  // A model_type nobody registered lists the ones that are.
  absl::Status unknown =
      ParseModelConfig(Base("llama").dump(), "/m/config.json", families)
          .status();
  EXPECT_NE(unknown.message().find("'llama' is not supported (supported: "
                                   "toy_mla)"),
            std::string::npos)
      << unknown;
}

}  // namespace
}  // namespace care
