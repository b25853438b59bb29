// A model architecture family (llama, qwen3, ...) as the I/O layer sees it:
// its config.json fields and defaults, the tensors a checkpoint of it holds,
// and whether the converter can turn its attention into latent attention.
// The engine extends this class with the family's layer forward
// (engine/decoder_family.h) and lists every family it runs in one table
// (engine/families.h); that table is what callers pass to ParseModelConfig,
// LoadModelConfig and io::OpenModel, so this layer never depends on the
// engine. docs/architecture.md, "How to add a model family".
#ifndef CARE_IO_MODEL_FAMILY_H_
#define CARE_IO_MODEL_FAMILY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "care/io/config_reader.h"
#include "care/io/model_config.h"

namespace care {

namespace io {
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
};
}  // namespace io

class ModelFamily {
 public:
  virtual ~ModelFamily() = default;

  // config.json's model_type, e.g. "qwen3".
  virtual absl::string_view model_type() const = 0;

  // Adjusts config.json before any field is read: e.g. fills the keys the
  // family's transformers config defaults when absent (deepseek_v3). The
  // parsed config's `raw` keeps the file as written.
  virtual void PrepareConfig(nlohmann::json& config_json) const {
    (void)config_json;
  }

  // head_dim when config.json has none; nullopt: hidden_size /
  // num_attention_heads.
  virtual std::optional<int64_t> default_head_dim() const {
    return std::nullopt;
  }

  // Reads the family's own fields and defaults into `config`, after the
  // common ones (sizes, head_dim, RoPE, norms, tie_word_embeddings): e.g.
  // attention_bias, qk_norm, o_proj_bias, sliding_window, the MoE fields,
  // or a FamilyFields struct of fields no other family has.
  virtual absl::Status ParseFields(const ConfigReader& reader,
                                   ModelConfig& config) const = 0;

  // Appends layer `layer`'s tensors, in checkpoint order, to `out`
  // (io::ExpectedTensors adds the embeddings, final norm and lm_head).
  virtual void AppendLayerTensors(
      const ModelConfig& config, int64_t layer,
      std::vector<io::ExpectedTensor>& out) const = 0;

  // True when layer `layer` runs a sparse MoE block instead of a dense MLP.
  virtual bool IsMoeLayer(const ModelConfig& config, int64_t layer) const {
    (void)config;
    (void)layer;
    return false;
  }

  // Values cached per token per layer when it is not K and V of width
  // g·d_h each (latent attention, e.g. kv_lora_rank + qk_rope_head_dim);
  // nullopt: 2·g·d_h.
  virtual std::optional<int64_t> KvCacheWidth(const ModelConfig& config) const {
    (void)config;
    return std::nullopt;
  }

  // What the converter supports: OK when CARE can factorize this
  // checkpoint's K/V projections into latent attention, else an error
  // saying why not (e.g. attention that already is latent).
  virtual absl::Status CheckConvertible(const ModelConfig& config) const = 0;
};

// The family with this model_type in `families` (model_config.h: the
// families a caller knows, engine::Families() for all the engine runs), or
// null.
const ModelFamily* FindModelFamily(ModelFamilies families,
                                   absl::string_view model_type);

// "llama, mistral, ..." for error messages.
std::string ModelTypeList(ModelFamilies families);

}  // namespace care

#endif  // CARE_IO_MODEL_FAMILY_H_
