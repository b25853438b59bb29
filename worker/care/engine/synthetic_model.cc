#include "care/engine/synthetic_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/families.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/model.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t HashName(absl::string_view name, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;  // FNV-1a
  for (char c : name)
    h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Standard normals by Box-Muller, in parallel blocks with independent
// streams (deterministic regardless of thread count).
void FillNormal(uint64_t seed, float mean, float std, std::vector<float>* out) {
  constexpr int64_t kBlock = 1 << 16;
  const int64_t n = out->size();
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    uint64_t state = seed + 0x632BE59BD9B4E019ull * (b + 1);
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; i += 2) {
      const double u1 = ((SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;
      const double u2 = (SplitMix64(state) >> 11) * 0x1.0p-53;
      const double r = std::sqrt(-2.0 * std::log(u1));
      (*out)[i] = mean + std * static_cast<float>(
                                   r * std::cos(2 * std::numbers::pi * u2));
      if (i + 1 < end) {
        (*out)[i + 1] =
            mean +
            std * static_cast<float>(r * std::sin(2 * std::numbers::pi * u2));
      }
    }
  }
}

bool EndsWith(const std::string& s, absl::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix.data(),
                   suffix.size()) == 0;
}

// Writes into the residual stream: their output (row) dimension is D.
bool IsResidualWrite(const std::string& n) {
  return EndsWith(n, "o_proj.weight") || EndsWith(n, "down_proj.weight");
}

// The norms whose gains feed the attention and MLP inputs.
bool IsBlockNorm(const std::string& n) {
  return EndsWith(n, "input_layernorm.weight") ||
         EndsWith(n, "post_attention_layernorm.weight");
}

// The model-wide residual basis U [D, rank], entries N(0, 1).
MatrixRM ResidualBasis(int64_t d, const SyntheticOptions& o) {
  std::vector<float> u(d * o.structure_rank);
  FillNormal(HashName("__residual_basis__", o.seed), 0.0f, 1.0f, &u);
  return Eigen::Map<MatrixRM>(u.data(), d, o.structure_rank);
}

// t (already N(0, std²)) becomes sqrt(1-ε)·structured + sqrt(ε)·t, where the
// structured part has the same per-entry variance std².
void MixStructure(const std::string& name, float std, const SyntheticOptions& o,
                  Tensor* t) {
  const int64_t rank = o.structure_rank;
  const bool embed = !IsResidualWrite(name);  // [V, D] vs [D, in]
  const int64_t d = embed ? t->shape[1] : t->shape[0];
  const int64_t other = embed ? t->shape[0] : t->shape[1];
  const MatrixRM u = ResidualBasis(d, o);  // [D, rank]
  std::vector<float> coef(rank * other);
  FillNormal(HashName(name + "#coef", o.seed), 0.0f,
             std / std::sqrt(static_cast<float>(rank)), &coef);
  const float a = std::sqrt(1.0f - o.structure_noise);
  const float b = std::sqrt(o.structure_noise);
  auto w = t->matrix();
  w *= b;
  if (embed) {
    // [V, D] += a · Z [V, rank] · Uᵀ [rank, D]
    w.noalias() += a * Eigen::Map<const MatrixRM>(coef.data(), other, rank) *
                   u.transpose();
  } else {
    // [D, in] += a · U [D, rank] · B [rank, in]
    w.noalias() += a * u * Eigen::Map<const MatrixRM>(coef.data(), rank, other);
  }
}

}  // namespace

std::vector<int64_t> SyntheticOutlierChannels(int64_t hidden_size,
                                              const SyntheticOptions& o) {
  std::set<int64_t> picked;
  uint64_t state = HashName("__outlier_channels__", o.seed);
  const int64_t n = std::min<int64_t>(o.outlier_channels, hidden_size);
  while (static_cast<int64_t>(picked.size()) < n) {
    picked.insert(static_cast<int64_t>(SplitMix64(state) % hidden_size));
  }
  return {picked.begin(), picked.end()};
}

std::vector<SyntheticTensorSpec> SyntheticTensorSpecs(
    const ModelConfig& config) {
  std::vector<SyntheticTensorSpec> specs;
  for (const io::ExpectedTensor& t : io::ExpectedTensors(config)) {
    specs.push_back({t.name, t.shape});
  }
  if (config.o_proj_bias) {
    for (int64_t l = 0; l < config.num_hidden_layers; ++l) {
      specs.push_back(
          {io::names::Layer(l, "self_attn.o_proj.bias"), {config.hidden_size}});
    }
  }
  return specs;
}

Tensor SyntheticTensor(const SyntheticTensorSpec& spec,
                       const SyntheticOptions& o) {
  Tensor t;
  t.shape = spec.shape;
  t.data.resize(t.numel());
  const uint64_t seed = HashName(spec.name, o.seed);
  const std::string& n = spec.name;
  if (spec.shape.size() == 1) {
    if (EndsWith(n, "e_score_correction_bias")) {
      // Of the order of the sigmoid scores' spread, so that it changes
      // which experts win (DeepSeek-V3's router uses it for selection).
      FillNormal(seed, 0.0f, 0.1f, &t.data);
    } else if (EndsWith(n, ".bias")) {
      FillNormal(seed, 0.0f, o.bias_std, &t.data);
    } else {  // norm weights
      FillNormal(seed, 1.0f, o.norm_jitter, &t.data);
      if (o.structured && IsBlockNorm(n)) {
        for (int64_t c : SyntheticOutlierChannels(spec.shape[0], o)) {
          t.data[c] *= o.outlier_norm_gain;
        }
      }
    }
  } else if (n == io::names::Embed()) {
    FillNormal(seed, 0.0f, o.embedding_std, &t.data);
    if (o.structured) {
      MixStructure(n, o.embedding_std, o, &t);
      auto e = t.matrix();  // [V, D]
      for (int64_t c : SyntheticOutlierChannels(spec.shape[1], o)) {
        e.col(c) *= o.outlier_embedding_scale;
      }
    }
  } else {
    const float std = o.fan_in_scaling
                          ? static_cast<float>(1.0 / std::sqrt(spec.shape[1]))
                          : o.weight_std;
    FillNormal(seed, 0.0f, std, &t.data);
    if (o.structured && IsResidualWrite(n)) MixStructure(n, std, o, &t);
  }
  return t;
}

std::unique_ptr<InMemoryTensorSource> MakeSyntheticSource(
    const ModelConfig& config, const SyntheticOptions& options) {
  auto source = std::make_unique<InMemoryTensorSource>();
  for (const SyntheticTensorSpec& spec : SyntheticTensorSpecs(config)) {
    source->Add(spec.name, SyntheticTensor(spec, options));
  }
  return source;
}

absl::Status WriteSyntheticModel(const nlohmann::json& config_json,
                                 const std::string& dir, io::DType dtype,
                                 const SyntheticOptions& options,
                                 uint64_t max_shard_bytes) {
  CARE_ASSIGN_OR_RETURN(
      ModelConfig config,
      ParseModelConfig(config_json.dump(), absl::StrCat(dir, "/config.json"),
                       Families()));
  CARE_ASSIGN_OR_RETURN(
      auto writer,
      io::CheckpointWriter::Create(
          dir, {.max_shard_bytes = max_shard_bytes, .overwrite = true}));
  for (const SyntheticTensorSpec& spec : SyntheticTensorSpecs(config)) {
    CARE_RETURN_IF_ERROR(
        writer->AddTensorF32(spec.name, SyntheticTensor(spec, options), dtype));
  }
  nlohmann::json stored = config_json;
  stored["torch_dtype"] = std::string(io::TorchDTypeName(dtype));
  CARE_RETURN_IF_ERROR(writer->SetConfig(stored));
  return writer->Commit();
}

absl::StatusOr<nlohmann::json> PresetConfigJson(absl::string_view preset,
                                                int64_t num_layers) {
  nlohmann::json j;
  if (preset == "demo") {
    // A small Llama (GQA 8/4, ~3M parameters) that converts in seconds.
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"hidden_size", 256},
         {"intermediate_size", 688},
         {"num_hidden_layers", 4},
         {"num_attention_heads", 8},
         {"num_key_value_heads", 4},
         {"head_dim", 32},
         {"vocab_size", 4096},
         {"max_position_embeddings", 2048},
         {"rms_norm_eps", 1e-5},
         {"rope_theta", 10000.0},
         {"tie_word_embeddings", true},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 1},
         {"eos_token_id", 2},
         {"torch_dtype", "bfloat16"}};
  } else if (preset == "llama-3.2-1b" || preset == "llama-3.1-8b") {
    const bool small = preset == "llama-3.2-1b";
    j = {{"architectures", {"LlamaForCausalLM"}},
         {"model_type", "llama"},
         {"hidden_size", small ? 2048 : 4096},
         {"intermediate_size", small ? 8192 : 14336},
         {"num_hidden_layers", small ? 16 : 32},
         {"num_attention_heads", 32},
         {"num_key_value_heads", 8},
         {"head_dim", small ? 64 : 128},
         {"vocab_size", 128256},
         {"max_position_embeddings", 131072},
         {"rms_norm_eps", 1e-5},
         {"rope_theta", 500000.0},
         {"rope_scaling",
          {{"rope_type", "llama3"},
           {"factor", small ? 32.0 : 8.0},
           {"low_freq_factor", 1.0},
           {"high_freq_factor", 4.0},
           {"original_max_position_embeddings", 8192}}},
         {"tie_word_embeddings", small},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 128000},
         {"eos_token_id", 128001},
         {"torch_dtype", "bfloat16"}};
  } else if (preset == "qwen3-4b") {
    j = {{"architectures", {"Qwen3ForCausalLM"}},
         {"model_type", "qwen3"},
         {"hidden_size", 2560},
         {"intermediate_size", 9728},
         {"num_hidden_layers", 36},
         {"num_attention_heads", 32},
         {"num_key_value_heads", 8},
         {"head_dim", 128},
         {"vocab_size", 151936},
         {"max_position_embeddings", 40960},
         {"rms_norm_eps", 1e-6},
         {"rope_theta", 1000000.0},
         {"tie_word_embeddings", true},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 151643},
         {"eos_token_id", 151645},
         {"torch_dtype", "bfloat16"}};
  } else if (preset == "qwen3-30b-a3b") {
    j = {{"architectures", {"Qwen3MoeForCausalLM"}},
         {"model_type", "qwen3_moe"},
         {"hidden_size", 2048},
         {"intermediate_size", 6144},
         {"moe_intermediate_size", 768},
         {"num_experts", 128},
         {"num_experts_per_tok", 8},
         {"norm_topk_prob", true},
         {"decoder_sparse_step", 1},
         {"mlp_only_layers", nlohmann::json::array()},
         {"num_hidden_layers", 48},
         {"num_attention_heads", 32},
         {"num_key_value_heads", 4},
         {"head_dim", 128},
         {"vocab_size", 151936},
         {"max_position_embeddings", 40960},
         {"rms_norm_eps", 1e-6},
         {"rope_theta", 1000000.0},
         {"tie_word_embeddings", false},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 151643},
         {"eos_token_id", 151645},
         {"torch_dtype", "bfloat16"}};
  } else if (preset == "deepseek-v3-tiny") {
    // Every DeepSeek-V3 path at test size: low-rank q, yarn with
    // mscale_all_dim, a dense layer, then group-routed MoE layers.
    j = {{"architectures", {"DeepseekV3ForCausalLM"}},
         {"model_type", "deepseek_v3"},
         {"hidden_size", 64},
         {"intermediate_size", 96},
         {"moe_intermediate_size", 32},
         {"num_hidden_layers", 3},
         {"num_attention_heads", 4},
         {"num_key_value_heads", 4},
         {"q_lora_rank", 24},
         {"kv_lora_rank", 16},
         {"qk_nope_head_dim", 8},
         {"qk_rope_head_dim", 8},
         {"v_head_dim", 12},
         {"n_routed_experts", 8},
         {"n_shared_experts", 1},
         {"num_experts_per_tok", 2},
         {"n_group", 4},
         {"topk_group", 2},
         {"first_k_dense_replace", 1},
         {"norm_topk_prob", true},
         {"routed_scaling_factor", 2.5},
         {"vocab_size", 128},
         {"max_position_embeddings", 256},
         {"rms_norm_eps", 1e-6},
         {"rope_theta", 10000.0},
         {"rope_interleave", true},
         {"rope_scaling",
          {{"type", "yarn"},
           {"factor", 4.0},
           {"original_max_position_embeddings", 64},
           {"beta_fast", 32},
           {"beta_slow", 1},
           {"mscale", 1.0},
           {"mscale_all_dim", 1.0}}},
         {"tie_word_embeddings", false},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 0},
         {"eos_token_id", 1},
         {"torch_dtype", "bfloat16"}};
  } else if (preset == "deepseek-v2-lite") {
    // DeepSeek-V2-Lite's shapes (16 heads, kv_lora_rank 512, q_proj without
    // low rank, 64 experts of 1408 + 2 shared, 6 per token) as deepseek_v3
    // (sigmoid router); for benchmarks.
    j = {{"architectures", {"DeepseekV3ForCausalLM"}},
         {"model_type", "deepseek_v3"},
         {"hidden_size", 2048},
         {"intermediate_size", 10944},
         {"moe_intermediate_size", 1408},
         {"num_hidden_layers", 27},
         {"num_attention_heads", 16},
         {"num_key_value_heads", 16},
         {"q_lora_rank", nullptr},
         {"kv_lora_rank", 512},
         {"qk_nope_head_dim", 128},
         {"qk_rope_head_dim", 64},
         {"v_head_dim", 128},
         {"n_routed_experts", 64},
         {"n_shared_experts", 2},
         {"num_experts_per_tok", 6},
         {"n_group", 1},
         {"topk_group", 1},
         {"first_k_dense_replace", 1},
         {"norm_topk_prob", false},
         {"routed_scaling_factor", 1.0},
         {"vocab_size", 102400},
         {"max_position_embeddings", 163840},
         {"rms_norm_eps", 1e-6},
         {"rope_theta", 10000.0},
         {"rope_interleave", true},
         {"rope_scaling",
          {{"type", "yarn"},
           {"factor", 40.0},
           {"original_max_position_embeddings", 4096},
           {"beta_fast", 32},
           {"beta_slow", 1},
           {"mscale", 0.707},
           {"mscale_all_dim", 0.707}}},
         {"tie_word_embeddings", false},
         {"attention_bias", false},
         {"hidden_act", "silu"},
         {"bos_token_id", 100000},
         {"eos_token_id", 100001},
         {"torch_dtype", "bfloat16"}};
  } else {
    return absl::NotFoundError(absl::StrCat(
        "unknown synthetic preset '", preset,
        "' (known: demo, llama-3.2-1b, llama-3.1-8b, qwen3-4b, qwen3-30b-a3b, "
        "deepseek-v3-tiny, deepseek-v2-lite)"));
  }
  if (num_layers > 0) j["num_hidden_layers"] = num_layers;
  return j;
}

}  // namespace care::engine
