// care-worker inspect: what a model is, in the terms conversion cares about
// (docs/checkpoint-io.md).
#include <cstdint>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "base/flags.h"
#include "base/status_macros.h"
#include "care/engine/families.h"
#include "care/io/checkpoint.h"
#include "care/io/deepseek_v3_config.h"
#include "care/io/model.h"
#include "care/io/model_source.h"
#include "cli/command.h"

namespace care::cli {
namespace {

constexpr char kUsage[] =
    "usage: care-worker inspect MODEL_URI [--json]\n"
    "\n"
    "Opens a model (checking every tensor the config implies) and prints its\n"
    "architecture, the dimensions that matter for conversion (layers, heads,\n"
    "KV heads, head dim, KV width per token per layer), dtype, total\n"
    "parameters and bytes, and the tensor list.\n"
    "  MODEL_URI  model directory, file:///dir or hf://org/name[@rev]\n"
    "  --json     one JSON object instead of text\n";

// "1,234,567".
std::string Grouped(uint64_t v) {
  const std::string digits = absl::StrCat(v);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

nlohmann::json Describe(const io::Model& m, const std::string& uri) {
  const ModelConfig& c = m.config;
  const io::Checkpoint& w = *m.weights;
  std::map<std::string, uint64_t> dtype_counts;  // dtype -> tensors
  nlohmann::json tensors = nlohmann::json::array();
  for (const std::string& name : w.Names()) {
    absl::StatusOr<io::RawTensor> raw = w.Raw(name);
    if (!raw.ok()) continue;  // Names() only lists present tensors.
    const std::string dtype(io::DTypeName(raw->dtype));
    ++dtype_counts[dtype];
    std::string file = w.Location(name);
    file = file.substr(file.rfind('/') + 1);
    tensors.push_back({{"name", name},
                       {"dtype", dtype},
                       {"shape", raw->shape},
                       {"bytes", raw->bytes.size()},
                       {"file", file}});
  }
  std::string dtype;
  if (dtype_counts.size() == 1) {
    dtype = dtype_counts.begin()->first;
  } else {
    std::vector<std::string> parts;
    for (const auto& [d, n] : dtype_counts)
      parts.push_back(absl::StrCat(d, ":", n));
    dtype = absl::StrCat("mixed (", absl::StrJoin(parts, ", "), ")");
  }
  nlohmann::json j = {
      {"uri", uri},
      {"dir", m.dir},
      {"model_type", c.model_type},
      {"architecture", c.architecture},
      {"num_hidden_layers", c.num_hidden_layers},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      // g * d_h values for K and as many for V, per token and layer.
      {"kv_width", c.kv_width()},
      {"kv_values_per_token", 2 * c.kv_width() * c.num_hidden_layers},
      {"vocab_size", c.vocab_size},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"attention_bias", c.attention_bias},
      {"qk_norm", c.qk_norm},
      {"dtype", dtype},
      {"parameters", w.TotalParameters()},
      {"bytes", w.TotalBytes()},
      {"files", w.Files()},
      {"tensors", tensors},
  };
  if (c.num_experts > 0) {
    j["num_experts"] = c.num_experts;
    j["num_experts_per_tok"] = c.num_experts_per_tok;
    j["moe_intermediate_size"] = c.moe_intermediate_size;
  }
  if (const auto* mla = c.fields<DeepseekV3Config>()) {
    // MLA caches c_kv and the shared k_pe per token and layer.
    const DeepseekV3Config& d = *mla;
    j["head_dim"] = d.qk_head_dim();
    j["kv_width"] = d.kv_cache_width();
    j["kv_values_per_token"] = d.kv_cache_width() * c.num_hidden_layers;
    j["mla"] = {{"q_lora_rank", d.q_lora_rank ? nlohmann::json(*d.q_lora_rank)
                                              : nlohmann::json(nullptr)},
                {"kv_lora_rank", d.kv_lora_rank},
                {"qk_nope_head_dim", d.qk_nope_head_dim},
                {"qk_rope_head_dim", d.qk_rope_head_dim},
                {"v_head_dim", d.v_head_dim},
                {"first_k_dense_replace", d.first_k_dense_replace},
                {"n_shared_experts", d.n_shared_experts}};
  }
  if (c.latent) {
    j["latent"] = {{"rank_k", c.latent->rank_k}, {"rank_v", c.latent->rank_v}};
    int64_t per_token = 0;
    for (size_t l = 0; l < c.latent->rank_k.size(); ++l) {
      per_token += c.latent->rank_k[l] + c.latent->rank_v[l];
    }
    j["kv_values_per_token"] = per_token;
  }
  return j;
}

void PrintText(const nlohmann::json& j) {
  std::cout << absl::StrFormat(
      "model         %s\n"
      "directory     %s\n"
      "architecture  %s (%s)\n"
      "layers        %d\n"
      "hidden size   %d (MLP %d)\n"
      "heads         %d query, %d KV (group %d)\n"
      "head dim      %d\n"
      "KV width      %d per token per layer %s\n"
      "KV cache      %d values per token (all layers%s)\n",
      j["uri"].get<std::string>(), j["dir"].get<std::string>(),
      j["architecture"].get<std::string>(), j["model_type"].get<std::string>(),
      j["num_hidden_layers"].get<int64_t>(), j["hidden_size"].get<int64_t>(),
      j["intermediate_size"].get<int64_t>(),
      j["num_attention_heads"].get<int64_t>(),
      j["num_key_value_heads"].get<int64_t>(),
      j["num_attention_heads"].get<int64_t>() /
          j["num_key_value_heads"].get<int64_t>(),
      j["head_dim"].get<int64_t>(), j["kv_width"].get<int64_t>(),
      j.contains("mla") ? "(kv_lora_rank + qk_rope_head_dim: c_kv and the "
                          "shared k_pe)"
                        : "for K, as much for V (g * d_h)",
      j["kv_values_per_token"].get<int64_t>(),
      j.contains("mla") ? "" : ", K + V");
  if (j.contains("num_experts")) {
    std::cout << absl::StrFormat("experts       %d, %d per token (MLP %d)\n",
                                 j["num_experts"].get<int64_t>(),
                                 j["num_experts_per_tok"].get<int64_t>(),
                                 j["moe_intermediate_size"].get<int64_t>());
  }
  if (j.contains("mla")) {
    const auto& m = j["mla"];
    std::cout << absl::StrFormat(
        "MLA           q_lora_rank %s, kv_lora_rank %d, qk %d + %d (nope + "
        "rope), v %d; dense layers %d\n",
        m["q_lora_rank"].dump(), m["kv_lora_rank"].get<int64_t>(),
        m["qk_nope_head_dim"].get<int64_t>(),
        m["qk_rope_head_dim"].get<int64_t>(), m["v_head_dim"].get<int64_t>(),
        m["first_k_dense_replace"].get<int64_t>());
  }
  if (j.contains("latent")) {
    std::cout << "latent ranks  K " << j["latent"]["rank_k"].dump() << ", V "
              << j["latent"]["rank_v"].dump() << "\n";
  }
  std::cout << absl::StrFormat(
      "vocab         %d%s\n"
      "dtype         %s\n"
      "parameters    %s\n"
      "bytes         %s\n"
      "files         %s\n"
      "tensors       %d\n",
      j["vocab_size"].get<int64_t>(),
      j["tie_word_embeddings"].get<bool>() ? " (tied embeddings)" : "",
      j["dtype"].get<std::string>(), Grouped(j["parameters"].get<uint64_t>()),
      Grouped(j["bytes"].get<uint64_t>()),
      absl::StrJoin(j["files"].get<std::vector<std::string>>(), ", "),
      j["tensors"].size());
  for (const auto& t : j["tensors"]) {
    std::cout << absl::StrFormat(
        "  %-52s %-5s %-14s %s\n", t["name"].get<std::string>(),
        t["dtype"].get<std::string>(),
        absl::StrCat(
            "[", absl::StrJoin(t["shape"].get<std::vector<int64_t>>(), ", "),
            "]"),
        t["file"].get<std::string>());
  }
}

int RunInspect(const std::vector<std::string>& args) {
  absl::StatusOr<Flags> flags = Flags::Parse(args, {"json"});
  absl::Status usage =
      flags.ok() ? flags->CheckKnown({"json"}) : flags.status();
  if (usage.ok() && flags->positionals().size() != 1) {
    usage = absl::InvalidArgumentError("expected exactly one MODEL_URI");
  }
  if (!usage.ok()) {
    std::cerr << "care-worker inspect: " << usage.message()
              << " (see care-worker help inspect)\n";
    return 2;
  }
  const std::string uri = flags->positionals()[0];
  absl::StatusOr<std::string> dir = io::ResolveModelDir(uri);
  absl::StatusOr<io::Model> model =
      dir.ok() ? io::OpenModel(*dir, engine::Families())
               : absl::StatusOr<io::Model>(dir.status());
  if (!model.ok()) {
    std::cerr << "care-worker inspect: " << model.status().message() << "\n";
    return 1;
  }
  nlohmann::json j = Describe(*model, uri);
  if (flags->Bool("json")) {
    std::cout << j.dump(2) << "\n";
  } else {
    PrintText(j);
  }
  return 0;
}

}  // namespace

CARE_REGISTER_COMMAND(inspect, "inspect",
                      "describe a model: shapes, dtype, size", kUsage,
                      &RunInspect);

}  // namespace care::cli
