#include "care/io/model.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "care/io/checkpoint.h"
#include "care/io/dtype.h"
#include "care/io/tensor_names.h"

namespace care::io {

std::vector<ExpectedTensor> ExpectedTensors(const care::ModelConfig& c) {
  const int64_t d = c.hidden_size;
  std::vector<ExpectedTensor> out;
  out.push_back({names::Embed(), {c.vocab_size, d}});
  if (c.family != nullptr) {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      c.family->AppendLayerTensors(c, l, out);
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

absl::StatusOr<Model> OpenModel(const std::string& dir,
                                ModelFamilies families) {
  Model m;
  m.dir = dir;
  CARE_ASSIGN_OR_RETURN(m.config, LoadModelConfig(dir, families));
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
