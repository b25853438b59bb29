// Options of the output layout (docs/conversion.md "DeepSeek-V3 layout"):
// `latent` (the paper's CareLlamaForCausalLM, the default) or `deepseek_v3`
// (a stock DeepseekV3ForCausalLM checkpoint that serving engines load).
#ifndef CARE_CONVERT_MLA_EXPORT_OPTIONS_H_
#define CARE_CONVERT_MLA_EXPORT_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::convert {

enum class OutputLayout { kLatent, kDeepseekV3 };

// "latent"; "deepseek-v3" or "deepseek_v3". InvalidArgument listing them.
absl::StatusOr<OutputLayout> ParseOutputLayout(absl::string_view name);
// "latent", "deepseek_v3" (the config.json / report spelling).
std::string OutputLayoutName(OutputLayout layout);

// What the DeepSeek-V3 export's joint latent minimises with `care`
// (latent_objective.h): the attention objective (query-weighted score error
// of K_nope, o_proj-weighted output error of V; the default) or the plain
// activation error of [K_nope; V] (what `pca` minimises).
enum class LatentObjective { kAttention, kActivation };

// "attention" | "activation"; InvalidArgument listing them otherwise.
absl::StatusOr<LatentObjective> ParseLatentObjective(absl::string_view name);
std::string LatentObjectiveName(LatentObjective objective);

// How Qwen3's per-head q_norm / k_norm become linear maps (qk_norm_fold.h):
// one least-squares scale per head (kScalar), or the regression of the
// normed queries / keys on the layer input (kRegression); kAuto: regression
// for the data-aware methods (care, pca), the scalar fold for svd.
enum class QkNormFoldMode { kAuto, kScalar, kRegression };

// "auto" | "scalar" | "regression"; InvalidArgument listing them otherwise.
absl::StatusOr<QkNormFoldMode> ParseQkNormFoldMode(absl::string_view name);
std::string QkNormFoldModeName(QkNormFoldMode mode);

// `--o-proj-refit` (o_proj_refit.h), method care only: off, on, or auto
// (every split scored with and without the refit on the held-out windows,
// the better kept; the default).
enum class OProjRefitMode { kAuto, kOff, kOn };

// "auto" | "off" | "on"; InvalidArgument listing them otherwise.
absl::StatusOr<OProjRefitMode> ParseOProjRefitMode(absl::string_view name);
std::string OProjRefitModeName(OProjRefitMode mode);

struct MlaExportOptions {
  int64_t rope_dim = 0;      // qk_rope_head_dim R; 0 = auto
  int64_t freqfold = 0;      // K; 0 = auto
  int64_t kv_lora_rank = 0;  // 0 = from the budget: r = width − R
  // Equal calibration energy for K_nope and V before the joint fit.
  bool balance_kv = true;
  // Replace the dropped rotation of the NoPE key part by the attention-
  // weighted least-squares 2×2 map per head and frequency
  // (nope_correction.h); false: plain dropping (TransMLA, MHA2MLA).
  bool nope_correction = true;
  // Window (tokens) of the per-head NoPE score scale fitted to the source's
  // attention (nope_scale.h), with the NoPE correction; 0: no scale.
  int64_t nope_scale_span = 256;
  // `--latent-objective`; applies to method care (pca and svd keep theirs).
  LatentObjective latent_objective = LatentObjective::kAttention;
  // `--latent-refine N|auto`, with the attention objective: rounds of the
  // alternating fit of the joint latent with V measured under the
  // attention-averaged inputs (latent_refine.h, attended_inputs.h); 0: the
  // joint factorization's latent, V under C (the default). With
  // `latent_refine_auto` every split is a candidate twice, with 0 and with
  // `latent_refine` rounds, and the held-out scoring keeps the better: the
  // refinement lowers most cells of docs/quality.md but not all. Not the
  // default: its conjugate gradients cost ~480·(g+1)·D²·r per layer and
  // split (tens of TFLOP per layer at 8B shape; docs/conversion.md).
  int64_t latent_refine = 0;
  bool latent_refine_auto = false;
  // `--o-proj-refit`: refit o_proj to the export's attention
  // (o_proj_refit.h) with method care; models without q/k/v biases.
  OProjRefitMode o_proj_refit = OProjRefitMode::kAuto;
  // `--qk-norm-fold`: models with per-head q/k norms (Qwen3) only.
  QkNormFoldMode qk_norm_fold = QkNormFoldMode::kAuto;

  // Layer-wise healing after the factorization (heal_stage.h,
  // docs/conversion.md "Healing"): `--heal local`.
  bool heal = false;
  // Inputs of layer l's healing: the original model's (false) or those of
  // the healed layers below it (true, --heal-inputs healed). The target is
  // always the original layer's output on the original inputs.
  bool heal_inputs_healed = false;
  std::string heal_data;  // "" = calib_data's calibration range
  std::string heal_text_field = "text";
  int64_t heal_tokens = 262144;    // training tokens (bounded by the data)
  int64_t heal_seq_len = 256;      // window length (<= max positions)
  int64_t heal_steps = 400;        // Adam steps per layer (at most)
  int64_t heal_batch_windows = 8;  // windows per step
  double heal_lr = 0.016;          // step relative to each block's RMS
};

}  // namespace care::convert

#endif  // CARE_CONVERT_MLA_EXPORT_OPTIONS_H_
