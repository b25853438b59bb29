// Resume state of one conversion (docs/worker.md "Resume"): per-layer
// calibration results, a snapshot of the engine's hidden states, and small
// finished stage results, kept in <work_dir>/<fingerprint>/ so that a retried
// attempt (this worker or another one sharing the work dir) continues the
// calibration pass instead of repeating it.
//
// Every file is written to a unique temporary name, fsynced and renamed into
// place, so concurrent writers of the same fingerprint never tear a file
// (they write identical contents; the last rename wins). Every file starts
// with a header (magic, version, kind, payload size, SHA-256 of the
// payload); a file that fails any check is ignored with a log line and
// recomputed, never trusted. Saving is best effort: a failure is logged and
// the conversion goes on (the state is an optimisation, not a result).
#ifndef CARE_CONVERT_RESUME_STATE_H_
#define CARE_CONVERT_RESUME_STATE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/convert/decompose_model.h"
#include "care/convert/latent_layer.h"
#include "care/engine/engine.h"
#include "care/io/tensor.h"

namespace care::convert {

// Layer l's calibration results: its decomposition without the weights (they
// are re-read from the checkpoint) and its Grams.
struct SavedLayer {
  LayerDecomposition decomposition;
  LayerGrams grams;
};

// The engine's hidden states after layer next_layer-1 (the input of layer
// next_layer), calibration and held-out windows.
struct SavedHidden {
  int64_t next_layer = 0;
  MatrixRM hidden;  // [tokens, D]
};

class ResumeState {
 public:
  // Creates <root>/<fingerprint>/ (fingerprint: 64 hex digits) and prunes
  // sibling state directories untouched for a week (abandoned jobs).
  // Errors name the directory.
  static absl::StatusOr<std::unique_ptr<ResumeState>> Open(
      const std::string& root, const std::string& fingerprint);

  const std::string& dir() const { return dir_; }

  absl::Status SaveLayer(int64_t layer, const LayerDecomposition& d,
                         const LayerGrams& grams);
  // nullopt when absent or unusable (logged). `kv_width` is g·d_h: the
  // saved shapes must match it.
  std::optional<SavedLayer> LoadLayer(int64_t layer, int64_t kv_width) const;

  // One snapshot (the latest) replaces the previous one.
  absl::Status SaveHidden(int64_t next_layer, const MatrixRM& hidden);
  // nullopt when absent, unusable, or not [tokens, dim].
  std::optional<SavedHidden> LoadHidden(int64_t tokens, int64_t dim) const;
  void DropHidden();

  // A small named result (e.g. a perplexity): a vector of doubles.
  absl::Status SaveValues(const std::string& name,
                          const std::vector<double>& values);
  std::optional<std::vector<double>> LoadValues(const std::string& name,
                                                size_t count) const;

  // An opaque named record (e.g. a layer of another output layout's fit,
  // serialized by its owner); `name` is a file name stem.
  absl::Status SaveBlob(const std::string& name, const std::string& bytes);
  // nullopt when absent or unusable (logged).
  std::optional<std::string> LoadBlob(const std::string& name) const;

  // Deletes the whole state directory (after the output is written).
  void Remove();

 private:
  explicit ResumeState(std::string dir) : dir_(std::move(dir)) {}
  std::string Path(absl::string_view name) const;

  std::string dir_;
};

// One line to stderr, "care: resume: <message>" (the worker's log).
void ResumeLog(absl::string_view message);

// Wraps hooks.on_layer_output: the hidden states after layer l are saved
// (as the input of layer l+1) when the time since the last snapshot is at
// least 10x what that one cost, always after the first layer the pass runs
// and when the pass is being stopped; never after the last layer.
void AddHiddenSnapshots(engine::LayerHooks& hooks, ResumeState& state,
                        int64_t layers, compute::Backend& backend);

// state->SaveValues, a failure logged (the conversion goes on without it);
// nothing when `state` is null.
void SaveValuesOrLog(ResumeState* state, const std::string& name,
                     const std::vector<double>& values);

}  // namespace care::convert

#endif  // CARE_CONVERT_RESUME_STATE_H_
