#include "care/convert/write_checkpoint.h"

#include <atomic>
#include <map>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/engine/row_loader.h"
#include "care/io/checkpoint_writer.h"
#include "care/io/dtype.h"
#include "care/io/tensor_names.h"

namespace care::convert {
namespace {

// What to do when the sorted source names reach a k/v projection tensor.
enum class Action { kWriteK, kWriteV, kDrop };

Tensor ToTensor(const MatrixRM& m) {
  Tensor t;
  t.shape = {m.rows(), m.cols()};
  t.data.assign(m.data(), m.data() + m.size());
  return t;
}

Tensor ToTensor(const Eigen::RowVectorXf& v) {
  Tensor t;
  t.shape = {v.size()};
  t.data.assign(v.data(), v.data() + v.size());
  return t;
}

absl::Status WriteLatent(io::CheckpointWriter& w, io::DType dtype,
                         const std::string& a_name, const MatrixRM& a,
                         const std::string& b_name, const MatrixRM& b,
                         const std::string& bias_name,
                         const std::optional<Eigen::RowVectorXf>& bias) {
  CARE_RETURN_IF_ERROR(w.AddTensorF32(a_name, ToTensor(a), dtype));
  CARE_RETURN_IF_ERROR(w.AddTensorF32(b_name, ToTensor(b), dtype));
  if (bias) {
    CARE_RETURN_IF_ERROR(w.AddTensorF32(bias_name, ToTensor(*bias), dtype));
  }
  return absl::OkStatus();
}

// A source tensor as it is, or converted to `dtype` when it is a floating
// type other than `dtype`.
absl::Status CopyTensor(io::CheckpointWriter& w, const io::Checkpoint& source,
                        const std::string& name,
                        const std::optional<io::DType>& dtype) {
  CARE_ASSIGN_OR_RETURN(io::RawTensor raw, source.Raw(name));
  if (!dtype || raw.dtype == *dtype || !io::IsConvertibleToF32(raw.dtype)) {
    return w.AddTensorRaw(name, raw.dtype, raw.shape, raw.bytes, raw.file);
  }
  CARE_ASSIGN_OR_RETURN(Tensor t, source.LoadF32(name));
  return w.AddTensorF32(name, t, *dtype);
}

}  // namespace

absl::StatusOr<std::optional<io::DType>> ParseOutputDType(
    absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower.empty() || lower == "source" || lower == "same") {
    return std::nullopt;
  }
  if (lower == "f32") return io::DType::kF32;
  if (lower == "f16") return io::DType::kF16;
  if (lower == "bf16") return io::DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat(
      "output dtype '", name, "': expected source, f32, f16 or bf16"));
}

std::string LatentArchitectureName(const std::string& source_architecture) {
  if (source_architecture.rfind("Care", 0) == 0) return source_architecture;
  return absl::StrCat("Care", source_architecture.empty()
                                  ? std::string("ForCausalLM")
                                  : source_architecture);
}

nlohmann::json ConvertedConfigJson(const ModelConfig& source,
                                   const std::vector<LatentLayer>& layers,
                                   const LatentMetadata& meta) {
  nlohmann::json j =
      source.raw.is_object() ? source.raw : nlohmann::json::object();
  j["architectures"] =
      nlohmann::json::array({LatentArchitectureName(source.architecture)});
  std::vector<int64_t> rk, rv;
  for (const LatentLayer& l : layers) {
    rk.push_back(l.k.w_down.cols());
    rv.push_back(l.v.w_down.cols());
  }
  j["care"] = {{"format_version", 1},
               {"layout", "latent"},
               {"rank_k", rk},
               {"rank_v", rv},
               {"method", meta.method},
               {"allocation", meta.allocation},
               {"budget", meta.budget},
               {"damping", meta.damping},
               {"source_architecture", source.architecture}};
  return j;
}

absl::StatusOr<std::unique_ptr<io::CheckpointWriter>> WriteConvertedTensors(
    const io::Checkpoint& source, const ModelConfig& config,
    const std::vector<LatentLayer>& layers, const std::string& out_dir,
    const WriteOptions& options, const LayerCallback& after_layer,
    const std::atomic<bool>* stop) {
  const int64_t num_layers = config.num_hidden_layers;
  if (static_cast<int64_t>(layers.size()) != num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("write: ", layers.size(),
                                                   " converted layers for a ",
                                                   num_layers, "-layer model"));
  }
  std::map<std::string, std::pair<Action, int64_t>, std::less<>> special;
  for (int64_t l = 0; l < num_layers; ++l) {
    special[io::names::KProj(l)] = {Action::kWriteK, l};
    special[io::names::VProj(l)] = {Action::kWriteV, l};
    special[io::names::KBias(l)] = {Action::kDrop, l};
    special[io::names::VBias(l)] = {Action::kDrop, l};
  }
  if (options.dtype && !io::IsWritableFromF32(*options.dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("output dtype ", io::DTypeName(*options.dtype),
                     " is not writable (allowed: F32, F16, BF16)"));
  }
  const io::DType latent_dtype = options.dtype.value_or(io::DType::kF32);
  io::WriterOptions wo;
  wo.overwrite = options.overwrite;
  wo.temp_tag = options.temp_tag;
  wo.before_rename = options.before_commit;
  CARE_ASSIGN_OR_RETURN(auto writer, io::CheckpointWriter::Create(out_dir, wo));
  int64_t written_layers = 0;
  for (const std::string& name : source.Names()) {
    if (stop != nullptr && stop->load(std::memory_order_relaxed)) {
      return absl::CancelledError(
          absl::StrCat("writing ", out_dir, " was stopped"));
    }
    auto it = special.find(name);
    if (it == special.end()) {
      CARE_RETURN_IF_ERROR(CopyTensor(*writer, source, name, options.dtype));
      // The copied pages would otherwise stay mapped: the whole source
      // checkpoint (16 GB at 8B) in the resident set.
      engine::ReleaseMappedTensor(source, name);
      continue;
    }
    const auto [action, l] = it->second;
    const LatentLayer& layer = layers[l];
    if (action == Action::kWriteK) {
      CARE_RETURN_IF_ERROR(WriteLatent(
          *writer, latent_dtype, io::names::KAProj(l), layer.KA(),
          io::names::KBProj(l), layer.KB(), io::names::KBBias(l), layer.b_k));
    } else if (action == Action::kWriteV) {
      CARE_RETURN_IF_ERROR(WriteLatent(
          *writer, latent_dtype, io::names::VAProj(l), layer.VA(),
          io::names::VBProj(l), layer.VB(), io::names::VBBias(l), layer.b_v));
      // v_proj sorts after k_proj in the same layer: the layer is complete.
      ++written_layers;
      if (after_layer) CARE_RETURN_IF_ERROR(after_layer(written_layers - 1));
    }
  }
  return writer;
}

absl::Status FinishConvertedCheckpoint(io::CheckpointWriter& writer,
                                       const io::Checkpoint& source,
                                       const nlohmann::json& config_json,
                                       const WriteOptions& options) {
  if (options.dtype) {
    nlohmann::json config_out = config_json;
    const std::string torch_name(io::TorchDTypeName(*options.dtype));
    config_out["torch_dtype"] = torch_name;
    if (config_out.contains("care") && config_out["care"].is_object()) {
      config_out["care"]["dtype"] = torch_name;
    }
    CARE_RETURN_IF_ERROR(writer.SetConfig(config_out));
  } else {
    CARE_RETURN_IF_ERROR(writer.SetConfig(config_json));
  }
  CARE_RETURN_IF_ERROR(writer.CopyAuxiliaryFiles(source.dir()));
  if (!options.report_json.empty()) {
    CARE_RETURN_IF_ERROR(
        writer.WriteFile("care_report.json", options.report_json));
  }
  if (!options.report_html.empty()) {
    CARE_RETURN_IF_ERROR(
        writer.WriteFile("care_report.html", options.report_html));
  }
  return writer.Commit();
}

absl::Status WriteConvertedCheckpoint(const io::Checkpoint& source,
                                      const ModelConfig& config,
                                      const std::vector<LatentLayer>& layers,
                                      const nlohmann::json& config_json,
                                      const std::string& out_dir,
                                      const WriteOptions& options,
                                      const LayerCallback& after_layer) {
  CARE_ASSIGN_OR_RETURN(std::unique_ptr<io::CheckpointWriter> writer,
                        WriteConvertedTensors(source, config, layers, out_dir,
                                              options, after_layer));
  return FinishConvertedCheckpoint(*writer, source, config_json, options);
}

}  // namespace care::convert
