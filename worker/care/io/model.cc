#include "care/io/model.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "care/io/checkpoint.h"
#include "care/io/dtype.h"
#include "care/io/tensor_names.h"
#include "care/util/status_macros.h"

namespace care::io {

std::vector<ExpectedTensor> ExpectedTensors(const care::ModelConfig& c) {
  const int64_t d = c.hidden_size;
  const int64_t q_width = c.num_attention_heads * c.head_dim;  // n_h * d_h
  const int64_t kv_width = c.kv_width();                       // g * d_h
  std::vector<ExpectedTensor> out;
  out.push_back({names::Embed(), {c.vocab_size, d}});
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    out.push_back({names::InputNorm(l), {d}});
    out.push_back({names::QProj(l), {q_width, d}});
    if (c.latent) {
      const int64_t rk = c.latent->rank_k[l];
      const int64_t rv = c.latent->rank_v[l];
      out.push_back({names::KAProj(l), {rk, d}});
      out.push_back({names::KBProj(l), {kv_width, rk}});
      out.push_back({names::VAProj(l), {rv, d}});
      out.push_back({names::VBProj(l), {kv_width, rv}});
    } else {
      out.push_back({names::KProj(l), {kv_width, d}});
      out.push_back({names::VProj(l), {kv_width, d}});
    }
    out.push_back({names::OProj(l), {d, q_width}});
    if (c.attention_bias) {
      out.push_back({names::QBias(l), {q_width}});
      out.push_back(
          {c.latent ? names::KBBias(l) : names::KBias(l), {kv_width}});
      out.push_back(
          {c.latent ? names::VBBias(l) : names::VBias(l), {kv_width}});
    }
    if (c.qk_norm) {
      out.push_back({names::QNorm(l), {c.head_dim}});
      out.push_back({names::KNorm(l), {c.head_dim}});
    }
    out.push_back({names::PostAttentionNorm(l), {d}});
    if (c.IsMoeLayer(l)) {
      const int64_t im = c.moe_intermediate_size;
      out.push_back({names::Router(l), {c.num_experts, d}});
      for (int64_t e = 0; e < c.num_experts; ++e) {
        out.push_back({names::ExpertGate(l, e), {im, d}});
        out.push_back({names::ExpertUp(l, e), {im, d}});
        out.push_back({names::ExpertDown(l, e), {d, im}});
      }
    } else {
      out.push_back({names::GateProj(l), {c.intermediate_size, d}});
      out.push_back({names::UpProj(l), {c.intermediate_size, d}});
      out.push_back({names::DownProj(l), {d, c.intermediate_size}});
    }
  }
  out.push_back({names::FinalNorm(), {d}});
  if (!c.tie_word_embeddings) {
    out.push_back({names::LmHead(), {c.vocab_size, d}});
  }
  return out;
}

absl::Status CheckTensors(const care::ModelConfig& config,
                          const care::TensorSource& source) {
  for (const ExpectedTensor& t : ExpectedTensors(config)) {
    if (!source.Has(t.name)) {
      return absl::NotFoundError(absl::StrCat(
          "tensor '", t.name, "' is missing from ", source.Location(t.name),
          " (expected shape ", ShapeString(t.shape), ")"));
    }
    CARE_ASSIGN_OR_RETURN(std::vector<int64_t> shape, source.Shape(t.name));
    if (shape != t.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' in ", source.Location(t.name), " has shape ",
          ShapeString(shape), ", expected ", ShapeString(t.shape)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Model> OpenModel(const std::string& dir) {
  Model m;
  m.dir = dir;
  CARE_ASSIGN_OR_RETURN(m.config, LoadModelConfig(dir));
  CARE_ASSIGN_OR_RETURN(m.weights, Checkpoint::Open(dir));
  CARE_RETURN_IF_ERROR(CheckTensors(m.config, *m.weights));
  // The engine reads every expected tensor as float: refuse integer ones
  // (quantized or corrupt checkpoints) here, not stages later.
  for (const ExpectedTensor& t : ExpectedTensors(m.config)) {
    CARE_ASSIGN_OR_RETURN(DType dtype, m.weights->TensorDType(t.name));
    if (!IsConvertibleToF32(dtype)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tensor '", t.name, "' in ", m.weights->Location(t.name),
          " has dtype ", DTypeName(dtype),
          "; weights must be F32, F16, BF16 or F64 (a quantized checkpoint "
          "is not supported)"));
    }
  }
  return m;
}

}  // namespace care::io
