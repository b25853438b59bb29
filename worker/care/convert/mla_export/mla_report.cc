#include "care/convert/mla_export/mla_report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace care::convert {

nlohmann::json MlaHealReportToJson(const MlaHealReport& h) {
  nlohmann::json layers = nlohmann::json::array();
  for (const MlaHealLayerReport& l : h.layers) {
    layers.push_back({{"heldout_error_before", l.heldout_error_before},
                      {"heldout_error_after", l.heldout_error_after},
                      {"train_error_before", l.train_error_before},
                      {"steps", l.steps},
                      {"best_step", l.best_step},
                      {"accepted", l.accepted}});
  }
  return {{"inputs", h.inputs},
          {"data", h.data},
          {"train_tokens", h.train_tokens},
          {"heldout_tokens", h.heldout_tokens},
          {"seq_len", h.seq_len},
          {"max_steps", h.max_steps},
          {"batch_windows", h.batch_windows},
          {"learning_rate", h.learning_rate},
          {"seconds", h.seconds},
          {"resumed_layers", h.resumed_layers},
          {"heldout_nll_before", h.heldout_nll_before},
          {"heldout_nll_after", h.heldout_nll_after},
          {"layers", std::move(layers)}};
}

nlohmann::json MlaReportToJson(const MlaExportReport& r) {
  nlohmann::json j = {
      {"rope_dim", r.rope_dim},
      {"rope_dim_auto", r.rope_dim_auto},
      {"freqfold", r.freqfold},
      {"freqfold_auto", r.freqfold_auto},
      {"latent_refine", r.latent_refine},
      {"latent_refine_auto", r.latent_refine_auto},
      {"o_proj_refit", r.o_proj_refit},
      {"o_proj_refit_auto", r.o_proj_refit_auto},
      {"kv_lora_rank", r.kv_lora_rank},
      {"balance_kv", r.balance_kv},
      {"nope_correction", r.nope_correction},
      {"latent_objective", r.latent_objective},
      {"qk_norm_fold", r.qk_norm_fold},
      {"nope_scale_span", r.nope_scale_span},
      {"rope_theta", r.rope_theta},
      {"kv_width_per_layer_before", r.kv_width_per_layer_before},
      {"kv_width_per_layer_after", r.kv_width_per_layer_after},
      {"heldout_nll_partial_rope", r.heldout_nll_partial_rope},
      {"heldout_nll_original", r.heldout_nll_original},
      {"scoring_seq_len", r.scoring_seq_len},
      {"scoring_windows", r.scoring_windows},
      {"eval_ppl_partial_rope", r.eval_ppl_partial_rope
                                    ? nlohmann::json(*r.eval_ppl_partial_rope)
                                    : nlohmann::json(nullptr)},
      {"eval_ppl_qk_norm_fold", r.eval_ppl_qk_norm_fold
                                    ? nlohmann::json(*r.eval_ppl_qk_norm_fold)
                                    : nlohmann::json(nullptr)}};
  nlohmann::json layers = nlohmann::json::array();
  for (const MlaLayerReport& l : r.layers) {
    layers.push_back({{"alpha_log2", l.alpha_log2},
                      {"rope_energy", l.rope_energy},
                      {"balance_k", l.balance_k},
                      {"retained_energy", l.retained_energy},
                      {"calib_error_k", l.calib_error_k},
                      {"calib_error_v", l.calib_error_v},
                      {"heldout_error_k", l.heldout_error_k},
                      {"heldout_error_v", l.heldout_error_v},
                      {"norm_error_mean", l.norm_error_mean},
                      {"norm_error_max", l.norm_error_max},
                      {"nope_dropped_error", l.nope_dropped_error},
                      {"nope_corrected_error", l.nope_corrected_error},
                      {"o_proj_refit", l.o_proj_refit},
                      {"o_proj_error_before", l.o_proj_error_before},
                      {"o_proj_error_after", l.o_proj_error_after},
                      {"note", l.note}});
  }
  j["layers"] = std::move(layers);
  nlohmann::json cands = nlohmann::json::array();
  for (const MlaCandidateReport& c : r.candidates) {
    cands.push_back({{"rope_dim", c.rope_dim},
                     {"freqfold", c.freqfold},
                     {"kv_lora_rank", c.kv_lora_rank},
                     {"latent_refine", c.latent_refine},
                     {"o_proj_refit", c.o_proj_refit},
                     {"heldout_nll", c.heldout_nll},
                     {"heldout_nll_partial_rope", c.heldout_nll_partial_rope},
                     {"chosen", c.chosen}});
  }
  j["candidates"] = std::move(cands);
  j["heal"] = r.heal ? MlaHealReportToJson(*r.heal) : nlohmann::json(nullptr);
  return j;
}

std::string MlaReportSummary(const MlaExportReport& r) {
  std::string s = absl::StrFormat(
      "  layout deepseek_v3: rope_dim %d%s, freqfold %d%s, kv_lora_rank %d "
      "(KV per token per layer %d -> %d), latent refine %d%s, o_proj refit "
      "%s%s\n",
      r.rope_dim, r.rope_dim_auto ? " (auto)" : "", r.freqfold,
      r.freqfold_auto ? " (auto)" : "", r.kv_lora_rank,
      r.kv_width_per_layer_before, r.kv_width_per_layer_after, r.latent_refine,
      r.latent_refine_auto ? " (auto)" : "", r.o_proj_refit ? "on" : "off",
      r.o_proj_refit_auto ? " (auto)" : "");
  absl::StrAppendFormat(
      &s,
      "  held-out scoring: %d windows x %d, original NLL %.4f\n"
      "  partial RoPE only: held-out NLL %.4f",
      r.scoring_windows, r.scoring_seq_len, r.heldout_nll_original,
      r.heldout_nll_partial_rope);
  if (r.eval_ppl_partial_rope) {
    absl::StrAppendFormat(&s, ", perplexity %.4f", *r.eval_ppl_partial_rope);
  }
  absl::StrAppend(&s, "\n");
  if (r.eval_ppl_qk_norm_fold) {
    absl::StrAppendFormat(&s, "  q/k norm fold only: perplexity %.4f\n",
                          *r.eval_ppl_qk_norm_fold);
  }
  if (r.heal) {
    const MlaHealReport& h = *r.heal;
    absl::StrAppendFormat(
        &s,
        "  healing (%s inputs, %d tokens, %.1f s): held-out NLL %.4f -> "
        "%.4f\n",
        h.inputs, h.train_tokens, h.seconds, h.heldout_nll_before,
        h.heldout_nll_after);
    for (size_t l = 0; l < h.layers.size(); ++l) {
      const MlaHealLayerReport& x = h.layers[l];
      absl::StrAppendFormat(
          &s,
          "    layer %d: attention-output error %.4g -> %.4g (%d steps, "
          "best %d)%s\n",
          l, x.heldout_error_before, x.heldout_error_after, x.steps,
          x.best_step, x.accepted ? "" : "  (kept the export)");
    }
  }
  if (r.candidates.size() > 1) {
    for (const MlaCandidateReport& c : r.candidates) {
      absl::StrAppendFormat(
          &s,
          "    candidate rope %d freqfold %d rank %d refine %d%s: NLL %.4f "
          "(partial RoPE only %.4f)%s\n",
          c.rope_dim, c.freqfold, c.kv_lora_rank, c.latent_refine,
          c.o_proj_refit ? " o_proj refit" : "", c.heldout_nll,
          c.heldout_nll_partial_rope, c.chosen ? "  <- chosen" : "");
    }
  }
  return s;
}

}  // namespace care::convert
