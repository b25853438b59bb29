// The layer-by-layer forward engine. A batch of equal-length token windows
// passes through the model one decoder layer at a time: layer l's weights are
// loaded into the compute backend (compute/backend.h; cpu or cuda, picked by
// EngineOptions::device), every window goes through it, the weights are
// dropped, and layer l+1 follows. Only the hidden states of all windows,
// [tokens, D] with tokens = windows * seq_len, stay in (backend) memory
// between layers, so a model never has to fit in memory as a whole. See
// docs/engine.md and docs/compute.md.
//
//   auto fwd = LayerwiseForward::Create(config, weights, windows, {});
//   CARE_RETURN_IF_ERROR((*fwd)->RunLayers(config.num_hidden_layers, hooks));
//   CARE_ASSIGN_OR_RETURN(NllSum nll, (*fwd)->ScoreTargets(targets));
#ifndef CARE_ENGINE_ENGINE_H_
#define CARE_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "care/compute/backend.h"
#include "care/engine/kv_projector.h"
#include "care/engine/weight_loader.h"
#include "care/io/model_config.h"
#include "care/io/tensor.h"
#include "care/io/tensor_source.h"

namespace care::engine {

struct EngineOptions {
  // The compute backend: "cpu", "cuda" or "cuda:N" (compute::OpenBackend).
  // The engine uses one process-wide backend per device name
  // (compute::SharedBackend), so passes and engines reuse its warm memory.
  std::string device = "cpu";
  // When set, used instead of `device` (not owned; must outlive the engine).
  compute::Backend* backend = nullptr;
  // Load (and convert) layer l+1's projection weights on a background thread
  // while layer l computes. Costs one more layer of weights in memory; see
  // docs/scale.md for when it pays.
  bool prefetch_weights = false;
  // OpenMP and Eigen threads; 0 = all cores. Applied by Create, RunLayer
  // and the scoring calls (Eigen's count is process-wide).
  int threads = 0;
  // Upper bound on the float32 elements of one logits block (rows × vocab
  // chunk) when scoring; the vocabulary is processed in chunks below it.
  // 0: the backend's default (DefaultLogitsBlockElements).
  int64_t logits_block_elements = 0;
  // Rows per group for the per-layer temporaries: attention runs on groups
  // of whole windows with at least this many tokens, the dense MLP on row
  // blocks of this size. Bounds memory when many windows are evaluated at
  // once; large enough that every GEMM runs at full speed.
  int64_t group_tokens = 8192;
};

// The scoring block when EngineOptions::logits_block_elements is 0. CPU:
// 8 Mi elements (at 1,022 scored rows and D 2048, 8,208-row lm_head chunks
// of 67 MB and a 34 MB logits block), small enough that the buffer pool
// keeps them from one pass to the next (a 32 Mi block made 0.77 GB of fresh,
// zeroed buffers per evaluation pass of a 128k vocabulary) and large enough
// that the per-chunk serial work stays negligible (2 Mi: +13 % CPU seconds;
// docs/performance.md "Against PyTorch"). Other devices: 32 Mi, larger
// GEMMs for a GPU.
int64_t DefaultLogitsBlockElements(const compute::Backend& backend);

// num_windows windows of seq_len token ids each, row-major; window w holds
// positions 0..seq_len-1 (RoPE positions restart at 0 in every window).
struct TokenWindows {
  int64_t num_windows = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> ids = {};  // [num_windows * seq_len]

  int64_t tokens() const { return num_windows * seq_len; }
};

// Callbacks into the forward pass. All are optional; a non-OK status stops
// the pass and is returned (with the layer added to the message).
// Order within layer l: input_layernorm -> on_kv_input(l, x) ->
// make_kv_projector(l) -> attention -> MLP -> on_layer_output(l, h). Because
// the projector is requested after the layer's inputs were observed, a
// caller can calibrate layer l on the (already converted) layers below it and
// then supply layer l's converted projector ("sequential" calibration).
// Activations reach the hooks as compute::Matrix in the engine's backend
// memory (LayerwiseForward::backend()); a hook that needs them on the host
// calls backend().Download, the hot paths stay on the device (calibration
// uses Backend::GramAdd).
struct LayerHooks {
  // (a) The input of k_proj / v_proj: [tokens, D] float32, the
  // post-input_layernorm hidden states of all windows.
  std::function<absl::Status(int64_t layer, const compute::Matrix& kv_input)>
      on_kv_input;
  // (b) Replaces layer l's K/V computation. Returning nullptr keeps the
  // checkpoint's own projector (LoadKvProjector: dense, or latent when the
  // config has latent ranks).
  std::function<absl::StatusOr<std::unique_ptr<KvProjector>>(int64_t layer)>
      make_kv_projector;
  // (c) Layer l's output hidden states, [tokens, D].
  std::function<absl::Status(int64_t layer, const compute::Matrix& hidden)>
      on_layer_output;
};

// Sum of negative log-likelihoods (natural log) over scored positions.
struct NllSum {
  double sum = 0.0;
  int64_t count = 0;

  double mean() const { return count > 0 ? sum / count : 0.0; }
  double ppl() const;  // exp(mean())
  void Add(const NllSum& other) {
    sum += other.sum;
    count += other.count;
  }
};

class DecoderFamily;

class LayerwiseForward {
 public:
  // `config` and `weights` must outlive the object. Checks the config
  // (supported model_type, shapes), the token ids against vocab_size, and
  // embeds the windows (from an io::Checkpoint only the rows of the ids
  // present are read; other sources load the table once). Opens the backend
  // (options.backend, else options.device): Unavailable / InvalidArgument
  // from compute::OpenBackend.
  static absl::StatusOr<std::unique_ptr<LayerwiseForward>> Create(
      const ModelConfig& config, const TensorSource& weights,
      TokenWindows windows, const EngineOptions& options = {});
  ~LayerwiseForward();

  int64_t num_layers() const;
  // The next layer RunLayer will run; num_layers() when all have run.
  int64_t next_layer() const { return next_layer_; }

  // Continues a pass from saved state (resume, docs/worker.md): makes
  // `hidden` ([tokens, D], the output of layer next_layer-1) the input of
  // layer `next_layer` in [0, num_layers()]. InvalidArgument on a shape that
  // is not [windows().tokens(), hidden_size] or a layer out of range.
  absl::Status SeekLayer(int64_t next_layer, const MatrixRM& hidden);

  // Runs layer next_layer() over every window.
  absl::Status RunLayer(const LayerHooks& hooks = {});
  // Runs layers next_layer() .. end-1 (end <= num_layers()); the hidden
  // states afterwards are the input of layer `end`.
  absl::Status RunLayers(int64_t end, const LayerHooks& hooks = {});

  // Layer next_layer()'s k/v input only: its input_layernorm of the hidden
  // states, handed to hooks.on_kv_input, without the layer's attention or
  // MLP. What a calibration pass needs of the last layer (nothing after it).
  // The hidden states and next_layer() are unchanged.
  absl::Status ObserveKvInput(const LayerHooks& hooks);

  // [tokens, D]: the embeddings, or the output of layer next_layer()-1, in
  // backend memory.
  const compute::Matrix& hidden() const { return hidden_; }
  // The same copied to the host.
  absl::StatusOr<MatrixRM> HiddenHost() const;
  compute::Backend& backend() const { return *backend_; }
  const TokenWindows& windows() const { return windows_; }

  // After all layers: final norm, lm_head and log-softmax over the
  // vocabulary in chunks (never tokens × vocab floats at once). targets has
  // one entry per token; -1 marks a position that is not scored. Returns the
  // NLL of every scored target, accumulated in double.
  absl::StatusOr<NllSum> ScoreTargets(const std::vector<int32_t>& targets);
  // The same per token: [tokens] NLLs, 0 at unscored positions (-1).
  // Multiple-choice scoring (care/eval) needs each continuation's sum.
  absl::StatusOr<std::vector<double>> ScoreTargetsEach(
      const std::vector<int32_t>& targets);
  // After all layers: the logits of every token, [tokens, vocab]. Meant for
  // tests and small inputs; ScoreTargets is the memory-bounded path.
  absl::StatusOr<MatrixRM> Logits();

 private:
  LayerwiseForward(const ModelConfig& config, const TensorSource& weights,
                   TokenWindows windows, const EngineOptions& options);
  // options_.logits_block_elements, or the backend's default when 0.
  int64_t LogitsBlock() const;

  const ModelConfig& config_;
  const TensorSource& weights_;
  TokenWindows windows_;
  EngineOptions options_;
  compute::Backend* backend_ = nullptr;
  const DecoderFamily* family_ = nullptr;  // config_.family's forward
  compute::Matrix rope_cos_, rope_sin_;    // [seq_len, rotary_dim / 2]
  compute::Matrix hidden_;                 // [tokens, D]
  // options_.prefetch_weights: the batch of the running layer and the next.
  std::unique_ptr<WeightPrefetch> current_, next_;
  int64_t next_layer_ = 0;
};

// m [rows, cols] copied from `backend` to the host (for hooks that need the
// activations there; Backend::Download).
absl::StatusOr<MatrixRM> DownloadMatrix(compute::Backend& backend,
                                        const compute::Matrix& m);

// Sets OpenMP's and Eigen's thread counts (0 = all cores); returns the count.
int SetEngineThreads(int threads);

}  // namespace care::engine

#endif  // CARE_ENGINE_ENGINE_H_
