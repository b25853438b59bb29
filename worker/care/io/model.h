// A model directory opened and checked: config.json parsed, weights mapped,
// and every tensor the config implies present with the implied shape.
#ifndef CARE_IO_MODEL_H_
#define CARE_IO_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/io/checkpoint.h"
#include "care/io/model_config.h"
#include "care/io/model_family.h"

namespace care::io {

struct Model {
  std::string dir;
  care::ModelConfig config;
  std::unique_ptr<Checkpoint> weights;
};

// Every tensor a checkpoint with `config` must hold, in model order:
// embeddings, per layer what its family lists (ModelFamily::
// AppendLayerTensors: norms, attention or latent attention, biases, q/k
// norms, dense MLP or router + experts), final norm, lm_head unless tied.
std::vector<ExpectedTensor> ExpectedTensors(const care::ModelConfig& config);

// Checks that `source` holds every ExpectedTensors(config) entry with its
// shape. The error names the tensor, the expected and actual shape, and the
// file (NotFound when missing, InvalidArgument when misshaped).
absl::Status CheckTensors(const care::ModelConfig& config,
                          const care::TensorSource& source);

// LoadModelConfig(dir, families) + Checkpoint::Open(dir) + CheckTensors.
// `families`: engine::Families() for every family the engine runs.
absl::StatusOr<Model> OpenModel(const std::string& dir, ModelFamilies families);

}  // namespace care::io

#endif  // CARE_IO_MODEL_H_
