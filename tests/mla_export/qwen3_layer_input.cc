#include "mla_export/qwen3_layer_input.h"

#include <utility>

#include "care/engine/engine.h"
#include "care/engine/families.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert::mla {

const Qwen3LayerInput* LoadQwen3LayerInput() {
  static const Qwen3LayerInput* f = []() -> const Qwen3LayerInput* {
    auto model = io::OpenModel(::care::testing::FixturePath("tinyqwen3-hf"),
                               engine::Families());
    if (!model.ok()) return nullptr;
    auto* out =
        new Qwen3LayerInput{std::move(*model), {}, kCalWindows * kSeqLen};
    auto fwd = engine::LayerwiseForward::Create(
        out->model.config, *out->model.weights,
        testing::FirstWindows(kCalWindows + kHeldWindows, kSeqLen));
    if (!fwd.ok()) return nullptr;
    engine::LayerHooks hooks;
    hooks.on_kv_input = [&](int64_t l,
                            const compute::Matrix& xm) -> absl::Status {
      if (l != kLayer) return absl::OkStatus();
      auto x = engine::DownloadMatrix((*fwd)->backend(), xm);
      if (!x.ok()) return x.status();
      out->x = std::move(*x);
      return absl::OkStatus();
    };
    if (!(*fwd)->RunLayers(kLayer + 1, hooks).ok()) return nullptr;
    return out;
  }();
  return f;
}

}  // namespace care::convert::mla
