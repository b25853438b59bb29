// The DeepSeek-V3 export's part of the conversion report
// (ConversionReport::deepseek_v3, care_report.json "deepseek_v3").
#ifndef CARE_CONVERT_MLA_EXPORT_MLA_REPORT_H_
#define CARE_CONVERT_MLA_EXPORT_MLA_REPORT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace care::convert {

struct MlaLayerReport {
  int alpha_log2 = 0;          // latent norm scale α = 2^-alpha_log2
  double rope_energy = 0;      // share of key energy kept with RoPE
  double balance_k = 1;        // β_K
  double retained_energy = 0;  // of the joint [K_nope; V] spectrum
  // ‖Y − Ŷ‖²/‖Y‖² of K (whole key; RoPE part exact) and V.
  double calib_error_k = 0, calib_error_v = 0;
  double heldout_error_k = 0, heldout_error_v = 0;
  // Relative error of the latent norm's linear regime: expected on the
  // calibration tokens, and the worst token measured.
  double norm_error_mean = 0, norm_error_max = 0;
  // Attention-weighted NoPE score error relative to its energy on the
  // calibration windows: rotation dropped, and with the fitted correction
  // (equal when the correction is off).
  double nope_dropped_error = 0, nope_corrected_error = 0;
  // o_proj refit (o_proj_refit.h): whether the layer kept it (only when
  // lower on the held-out windows), and the attention-output error
  // ‖ŷ − y‖²/‖y‖² after o_proj there with the source's o_proj and with the
  // refit; both 0 for a candidate without the refit.
  bool o_proj_refit = false;
  double o_proj_error_before = 0, o_proj_error_after = 0;
  std::string note;
};

struct MlaCandidateReport {
  int64_t rope_dim = 0, freqfold = 0, kv_lora_rank = 0;
  int64_t latent_refine = 0;  // rounds of the latent refinement
  bool o_proj_refit = false;  // o_proj refitted (o_proj_refit.h)
  double heldout_nll = 0;
  double heldout_nll_partial_rope = 0;  // same rope split, full latent rank
  bool chosen = false;
};

// Healing (heal_stage.h): per layer, the attention-output error after
// o_proj relative to the original layer's, ‖ŷ − y‖²/‖y‖², on the held-out
// windows, before (the one-shot export) and after; `accepted` when the
// healed parameters were kept (after < before).
struct MlaHealLayerReport {
  double heldout_error_before = 0, heldout_error_after = 0;
  double train_error_before = 0;  // first mini-batch
  int64_t steps = 0, best_step = 0;
  bool accepted = false;
};

struct MlaHealReport {
  std::string inputs;  // "original" or "healed"
  std::string data;    // the healing token source
  int64_t train_tokens = 0, heldout_tokens = 0, seq_len = 0;
  int64_t max_steps = 0, batch_windows = 0;
  double learning_rate = 0;
  double seconds = 0;
  // Layers restored from the resume state instead of healed (heal_resume.h).
  int64_t resumed_layers = 0;
  // Held-out NLL of the export on the healing held-out windows, before and
  // after healing.
  double heldout_nll_before = 0, heldout_nll_after = 0;
  std::vector<MlaHealLayerReport> layers;
};

struct MlaExportReport {
  int64_t rope_dim = 0;
  int64_t freqfold = 0;
  int64_t kv_lora_rank = 0;
  bool balance_kv = true;
  bool nope_correction = true;
  // What the joint latent minimised: attention, activation or weights (svd).
  std::string latent_objective;
  // Qwen3's q/k norms (qk_norm_fold.h): scalar or regression; "none" for
  // models without per-head norms.
  std::string qk_norm_fold = "none";
  // Window of the NoPE score scale fit (nope_scale.h); 0: none.
  int64_t nope_scale_span = 0;
  bool rope_dim_auto = false, freqfold_auto = false;
  // Rounds of the latent refinement of the chosen candidate (0: none), and
  // whether `auto` scored the split with and without it.
  int64_t latent_refine = 0;
  bool latent_refine_auto = false;
  // Whether the chosen candidate refits o_proj (o_proj_refit.h), and
  // whether `auto` scored the split with and without it.
  bool o_proj_refit = false;
  bool o_proj_refit_auto = false;
  double rope_theta = 0;  // written; source's theta^(R/d_h)
  // Numbers cached per token per layer: GQA 2·g·d_h, MLA kv_lora_rank + R.
  int64_t kv_width_per_layer_before = 0;
  int64_t kv_width_per_layer_after = 0;
  // "Partial RoPE only": the same rope split at full latent rank, i.e. the
  // loss of moving RoPE onto rope_dim dims with no compression at all.
  double heldout_nll_partial_rope = 0;
  std::optional<double> eval_ppl_partial_rope;
  // Qwen3 (q_norm/k_norm): perplexity of the source with only the norms
  // replaced by the export's folds, RoPE whole and no latent (fold_only.h).
  std::optional<double> eval_ppl_qk_norm_fold;
  // The candidates are scored on the held-out slice regrouped into windows
  // of up to 256 tokens (the calibration windows are too short to show a
  // rope split's long-range loss): their length and count, and the
  // original model's NLL there. heldout_nll fields use these windows.
  int64_t scoring_seq_len = 0, scoring_windows = 0;
  double heldout_nll_original = 0;
  std::vector<MlaLayerReport> layers;
  std::vector<MlaCandidateReport> candidates;
  std::optional<MlaHealReport> heal;  // with --heal local
};

nlohmann::json MlaReportToJson(const MlaExportReport& report);
nlohmann::json MlaHealReportToJson(const MlaHealReport& report);
// Lines for ReportSummary: layout, rope dim, freqfold, kv_lora_rank, KV
// width per layer, the partial-RoPE-only scores and the candidates.
std::string MlaReportSummary(const MlaExportReport& report);

}  // namespace care::convert

#endif  // CARE_CONVERT_MLA_EXPORT_MLA_REPORT_H_
