#include "care/engine/engine.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/annotate.h"
#include "base/status_macros.h"
#include "care/compute/registry.h"
#include "care/engine/decoder_family.h"
#include "care/engine/logits.h"
#include "care/engine/rope.h"
#include "care/engine/row_loader.h"
#include "care/engine/weight_loader.h"
#include "care/io/tensor_names.h"

namespace care::engine {

namespace {

absl::Status CheckPositive(int64_t value, const char* field) {
  if (value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config field ", field, " = ", value, " must be > 0"));
  }
  return absl::OkStatus();
}

absl::Status ValidateConfig(const ModelConfig& c) {
  CARE_RETURN_IF_ERROR(CheckPositive(c.hidden_size, "hidden_size"));
  CARE_RETURN_IF_ERROR(CheckPositive(c.num_hidden_layers, "num_hidden_layers"));
  CARE_RETURN_IF_ERROR(
      CheckPositive(c.num_attention_heads, "num_attention_heads"));
  CARE_RETURN_IF_ERROR(
      CheckPositive(c.num_key_value_heads, "num_key_value_heads"));
  CARE_RETURN_IF_ERROR(CheckPositive(c.head_dim, "head_dim"));
  CARE_RETURN_IF_ERROR(CheckPositive(c.vocab_size, "vocab_size"));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "num_attention_heads ", c.num_attention_heads,
        " is not a multiple of num_key_value_heads ", c.num_key_value_heads));
  }
  if (!(c.rms_norm_eps > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("rms_norm_eps ", c.rms_norm_eps, " must be > 0"));
  }
  return absl::OkStatus();
}

// A sliding window only matters past its width; refuse rather than
// silently attend further back than the model was trained to.
absl::Status CheckSlidingWindow(const ModelConfig& c, int64_t seq_len) {
  if (c.sliding_window && *c.sliding_window > 0 &&
      seq_len > *c.sliding_window) {
    return absl::UnimplementedError(
        absl::StrCat("sequence length ", seq_len, " exceeds ", c.model_type,
                     " sliding_window ", *c.sliding_window,
                     "; sliding-window attention is not implemented"));
  }
  return absl::OkStatus();
}

}  // namespace

double NllSum::ppl() const { return std::exp(mean()); }

int SetEngineThreads(int threads) {
  const int n = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(n);
  Eigen::setNbThreads(n);
  return n;
}

absl::StatusOr<compute::Weight> LayerWeight(const LayerContext& ctx,
                                            const std::string& name,
                                            int64_t rows, int64_t cols) {
  if (ctx.prefetch != nullptr) {
    auto w = ctx.prefetch->Take(name, rows, cols);
    if (w.ok()) return w;
  }
  return LoadWeightOn(ctx.backend, ctx.weights, name, rows, cols);
}

LayerwiseForward::LayerwiseForward(const ModelConfig& config,
                                   const TensorSource& weights,
                                   TokenWindows windows,
                                   const EngineOptions& options)
    : config_(config),
      weights_(weights),
      windows_(std::move(windows)),
      options_(options) {}

LayerwiseForward::~LayerwiseForward() = default;

absl::StatusOr<std::unique_ptr<LayerwiseForward>> LayerwiseForward::Create(
    const ModelConfig& config, const TensorSource& weights,
    TokenWindows windows, const EngineOptions& options) {
  CARE_RETURN_IF_ERROR(ValidateConfig(config));
  if (windows.num_windows < 1 || windows.seq_len < 1 ||
      static_cast<int64_t>(windows.ids.size()) != windows.tokens()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token windows: ", windows.num_windows, " windows x ", windows.seq_len,
        " tokens need ", windows.tokens(), " ids, got ", windows.ids.size(),
        " (both counts must be >= 1)"));
  }
  CARE_RETURN_IF_ERROR(CheckSlidingWindow(config, windows.seq_len));
  for (int64_t t = 0; t < windows.tokens(); ++t) {
    if (windows.ids[t] < 0 || windows.ids[t] >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", windows.ids[t], " at position ", t,
          " is outside [0, vocab_size = ", config.vocab_size, ")"));
    }
  }
  SetEngineThreads(options.threads);
  std::unique_ptr<LayerwiseForward> fwd(
      new LayerwiseForward(config, weights, std::move(windows), options));
  if (options.backend != nullptr) {
    fwd->backend_ = options.backend;
  } else {
    CARE_ASSIGN_OR_RETURN(fwd->backend_,
                          compute::SharedBackend(options.device));
  }
  compute::Backend& be = *fwd->backend_;
  CARE_ASSIGN_OR_RETURN(fwd->family_, ForwardOf(config));
  CARE_ASSIGN_OR_RETURN(RopeFrequencies freqs, ComputeRopeFrequencies(config));
  const RopeTable rope(freqs, fwd->windows_.seq_len);
  const int64_t half = rope.rotary_dim() / 2;
  CARE_ASSIGN_OR_RETURN(fwd->rope_cos_,
                        be.Upload(rope.cos().data(), rope.seq_len(), half));
  CARE_ASSIGN_OR_RETURN(fwd->rope_sin_,
                        be.Upload(rope.sin().data(), rope.seq_len(), half));
  // Only the rows of the ids present are read (all rows for a non-checkpoint
  // source, once).
  CARE_ASSIGN_OR_RETURN(
      MatrixRM embedded,
      GatherRows(weights, io::names::Embed(), config.vocab_size,
                 config.hidden_size, fwd->windows_.ids));  // [tokens, D]
  ReleaseMappedPages(weights, io::names::Embed());
  CARE_ASSIGN_OR_RETURN(
      fwd->hidden_,
      be.Upload(embedded.data(), embedded.rows(), embedded.cols()));
  if (options.prefetch_weights) {
    fwd->current_ = std::make_unique<WeightPrefetch>();
    fwd->next_ = std::make_unique<WeightPrefetch>();
  }
  return fwd;
}

int64_t LayerwiseForward::num_layers() const {
  return config_.num_hidden_layers;
}

absl::StatusOr<MatrixRM> DownloadMatrix(compute::Backend& backend,
                                        const compute::Matrix& m) {
  MatrixRM h(m.rows, m.cols);
  CARE_RETURN_IF_ERROR(backend.Download(m, h.data()));
  return h;
}

absl::StatusOr<MatrixRM> LayerwiseForward::HiddenHost() const {
  return DownloadMatrix(*backend_, hidden_);
}

absl::Status LayerwiseForward::SeekLayer(int64_t next_layer,
                                         const MatrixRM& hidden) {
  if (next_layer < 0 || next_layer > num_layers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SeekLayer(", next_layer, "): the layer must be in [0, ",
                     num_layers(), "]"));
  }
  if (hidden.rows() != windows_.tokens() ||
      hidden.cols() != config_.hidden_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "SeekLayer(", next_layer, "): hidden states are [", hidden.rows(), ", ",
        hidden.cols(), "], the windows need [", windows_.tokens(), ", ",
        config_.hidden_size, "]"));
  }
  CARE_ASSIGN_OR_RETURN(hidden_,
                        backend_->Upload(hidden.data(), hidden.rows(),
                                         hidden.cols()));  // [tokens, D]
  if (current_ != nullptr) {  // batches prefetched for the old position
    current_->Clear();
    next_->Clear();
  }
  next_layer_ = next_layer;
  return absl::OkStatus();
}

absl::Status LayerwiseForward::RunLayer(const LayerHooks& hooks) {
  if (next_layer_ >= num_layers()) {
    return absl::FailedPreconditionError(
        absl::StrCat("all ", num_layers(), " layers have already run"));
  }
  // OpenMP's thread count is per calling thread: apply it on every entry.
  SetEngineThreads(options_.threads);
  const int64_t layer = next_layer_;
  if (current_ != nullptr) {
    // current_ takes the batch started during the previous layer (empty for
    // the first: its weights load synchronously); the next layer's starts.
    std::swap(current_, next_);
    next_->Clear();
    if (layer + 1 < num_layers()) {
      next_->Start(*backend_, weights_,
                   family_->LayerWeightRequests(config_, layer + 1));
    }
  }
  const LayerContext ctx{config_,
                         weights_,
                         hooks,
                         *backend_,
                         rope_cos_,
                         rope_sin_,
                         windows_.num_windows,
                         windows_.seq_len,
                         std::max<int64_t>(1, options_.group_tokens),
                         current_.get()};
  // Layer l+1's (or the head's) bytes are read from disk while l computes.
  PrefetchMappedPages(weights_, layer + 1 < num_layers()
                                    ? io::names::Layer(layer + 1, "")
                                    : std::string("lm_head."));
  absl::Status status = family_->RunLayer(ctx, layer, &hidden_);
  if (current_ != nullptr) current_->Clear();
  if (!status.ok()) return Annotate(status, absl::StrCat("layer ", layer));
  ReleaseMappedPages(weights_, io::names::Layer(layer, ""));
  ++next_layer_;
  if (hooks.on_layer_output) {
    status = hooks.on_layer_output(layer, hidden_);
    if (!status.ok()) {
      return Annotate(status,
                      absl::StrCat("layer ", layer, " on_layer_output hook"));
    }
  }
  return absl::OkStatus();
}

absl::Status LayerwiseForward::RunLayers(int64_t end, const LayerHooks& hooks) {
  if (end < next_layer_ || end > num_layers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("RunLayers(", end, "): end must be in [", next_layer_,
                     ", ", num_layers(), "]"));
  }
  while (next_layer_ < end) CARE_RETURN_IF_ERROR(RunLayer(hooks));
  return absl::OkStatus();
}

absl::Status LayerwiseForward::ObserveKvInput(const LayerHooks& hooks) {
  if (next_layer_ >= num_layers()) {
    return absl::FailedPreconditionError(
        absl::StrCat("all ", num_layers(), " layers have already run"));
  }
  if (!hooks.on_kv_input) return absl::OkStatus();
  SetEngineThreads(options_.threads);
  const int64_t layer = next_layer_;
  compute::Backend& be = *backend_;
  CARE_ASSIGN_OR_RETURN(compute::Matrix ln,
                        LoadRowOn(be, weights_, io::names::InputNorm(layer),
                                  config_.hidden_size));
  CARE_ASSIGN_OR_RETURN(compute::Matrix x,
                        be.Allocate(hidden_.rows, hidden_.cols));
  CARE_RETURN_IF_ERROR(
      be.RmsNorm(hidden_, ln, config_.rms_norm_eps, &x));  // [tokens, D]
  absl::Status status = hooks.on_kv_input(layer, x);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("layer ", layer,
                                     ": on_kv_input hook: ", status.message()));
  }
  return absl::OkStatus();
}

int64_t DefaultLogitsBlockElements(const compute::Backend& backend) {
  return backend.kind() == compute::DeviceKind::kCpu ? int64_t{8} << 20
                                                     : int64_t{32} << 20;
}

int64_t LayerwiseForward::LogitsBlock() const {
  return options_.logits_block_elements > 0
             ? options_.logits_block_elements
             : DefaultLogitsBlockElements(*backend_);
}

absl::StatusOr<NllSum> LayerwiseForward::ScoreTargets(
    const std::vector<int32_t>& targets) {
  if (next_layer_ != num_layers()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ScoreTargets needs all ", num_layers(), " layers run; ",
                     next_layer_, " have"));
  }
  SetEngineThreads(options_.threads);
  return ScoreHiddenStates(config_, weights_, *backend_, hidden_, targets,
                           LogitsBlock());
}

absl::StatusOr<std::vector<double>> LayerwiseForward::ScoreTargetsEach(
    const std::vector<int32_t>& targets) {
  if (next_layer_ != num_layers()) {
    return absl::FailedPreconditionError(
        absl::StrCat("ScoreTargetsEach needs all ", num_layers(),
                     " layers run; ", next_layer_, " have"));
  }
  SetEngineThreads(options_.threads);
  return ScoreHiddenStatesEach(config_, weights_, *backend_, hidden_, targets,
                               LogitsBlock());
}

absl::StatusOr<MatrixRM> LayerwiseForward::Logits() {
  if (next_layer_ != num_layers()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Logits needs all ", num_layers(), " layers run; ",
                     next_layer_, " have"));
  }
  SetEngineThreads(options_.threads);
  return ComputeLogits(config_, weights_, *backend_, hidden_);
}

}  // namespace care::engine
