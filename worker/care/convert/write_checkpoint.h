// Writes a converted checkpoint (docs/checkpoint-format.md): every source
// tensor except k_proj / v_proj (and their biases) copied bit-exact, the
// latent factors as F32, config.json with a "care" block, tokenizer and other
// auxiliary files, and the report — all committed atomically by io's writer.
// With WriteOptions::dtype the factors and every floating-point copy are
// written in that dtype instead (rounded to nearest even), and config.json's
// torch_dtype and care.dtype say so.
#ifndef CARE_CONVERT_WRITE_CHECKPOINT_H_
#define CARE_CONVERT_WRITE_CHECKPOINT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/convert/calibrate.h"
#include "care/convert/latent_layer.h"
#include "care/io/checkpoint.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/model_config.h"

namespace care::convert {

struct LatentMetadata {
  std::string method;      // "care", ...
  std::string allocation;  // candidate used, e.g. "pooled-relative"
  std::string budget;      // "kv_save=0.75"
  double damping = 0;
};

// "LlamaForCausalLM" -> "CareLlamaForCausalLM".
std::string LatentArchitectureName(const std::string& source_architecture);

// The source config.json with architectures[0] renamed and a "care" object:
// rank_k, rank_v, method, allocation, budget, damping, format_version.
nlohmann::json ConvertedConfigJson(const ModelConfig& source,
                                   const std::vector<LatentLayer>& layers,
                                   const LatentMetadata& meta);

// "source" (or "same", as carectl --dtype says, or "") -> nullopt,
// "f32"/"f16"/"bf16" (any case) -> the dtype; InvalidArgument listing the
// allowed names otherwise.
absl::StatusOr<std::optional<io::DType>> ParseOutputDType(
    absl::string_view name);

struct WriteOptions {
  bool overwrite = false;
  // io::WriterOptions::temp_tag and before_rename (the worker's fenced
  // commit); empty: none.
  std::string temp_tag{};
  std::function<absl::Status()> before_commit{};
  std::string report_json;  // written as care_report.json when non-empty
  std::string report_html;  // written as care_report.html when non-empty
  // F32, F16 or BF16 for factors and floating-point copies; nullopt keeps
  // the source's dtype for copies and F32 for factors. Integer tensors are
  // always copied as they are.
  std::optional<io::DType> dtype;
};

// `layers` has one entry per decoder layer. `after_layer` reports progress
// per layer written (and may cancel).
absl::Status WriteConvertedCheckpoint(const io::Checkpoint& source,
                                      const ModelConfig& config,
                                      const std::vector<LatentLayer>& layers,
                                      const nlohmann::json& config_json,
                                      const std::string& out_dir,
                                      const WriteOptions& options,
                                      const LayerCallback& after_layer);

// The two halves of WriteConvertedCheckpoint, for a caller that overlaps
// the tensor data's disk I/O with other work (stages/write.cc):
// WriteConvertedTensors creates the writer and adds every tensor (checking
// `stop`, when given, between tensors: Cancelled); FinishConvertedCheckpoint
// adds config.json, the auxiliary files and the report, and commits. Only
// the report, config and `before_commit` of `options` matter to the second.
absl::StatusOr<std::unique_ptr<io::CheckpointWriter>> WriteConvertedTensors(
    const io::Checkpoint& source, const ModelConfig& config,
    const std::vector<LatentLayer>& layers, const std::string& out_dir,
    const WriteOptions& options, const LayerCallback& after_layer,
    const std::atomic<bool>* stop = nullptr);
absl::Status FinishConvertedCheckpoint(io::CheckpointWriter& writer,
                                       const io::Checkpoint& source,
                                       const nlohmann::json& config_json,
                                       const WriteOptions& options);

}  // namespace care::convert

#endif  // CARE_CONVERT_WRITE_CHECKPOINT_H_
