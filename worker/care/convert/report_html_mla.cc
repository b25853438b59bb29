#include "care/convert/report_html_mla.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "care/convert/report_html_heal.h"
#include "care/convert/report_html_util.h"
#include "care/convert/svg_chart.h"

namespace care::convert {
namespace {

using html::At;
using html::kKColor;
using html::kVColor;
using html::LayerNames;
using html::LayerValues;
using html::NumAt;
using html::ObjectFields;
using html::Opt;
using html::Percent;
using html::Row;
using html::StrAt;
using nlohmann::json;
using svg::Escape;
using svg::Num;

// The "deepseek_v3" fields a section below renders; any other is shown by
// ObjectFields (e.g. a later stage's results).
const std::vector<std::string>& KnownFields() {
  static const std::vector<std::string> kKnown = {"rope_dim",
                                                  "rope_dim_auto",
                                                  "freqfold",
                                                  "freqfold_auto",
                                                  "latent_refine",
                                                  "latent_refine_auto",
                                                  "o_proj_refit",
                                                  "o_proj_refit_auto",
                                                  "kv_lora_rank",
                                                  "balance_kv",
                                                  "nope_correction",
                                                  "rope_theta",
                                                  "kv_width_per_layer_before",
                                                  "kv_width_per_layer_after",
                                                  "heldout_nll_partial_rope",
                                                  "heldout_nll_original",
                                                  "scoring_seq_len",
                                                  "scoring_windows",
                                                  "eval_ppl_partial_rope",
                                                  "eval_ppl_qk_norm_fold",
                                                  "layers",
                                                  "candidates",
                                                  "heal"};  // HealSection
  return kKnown;
}

std::string WithAuto(const json& d, const char* key, const char* auto_key) {
  return absl::StrCat(Opt(NumAt(d, key)),
                      At(d, auto_key) == true ? " (auto)" : "");
}

std::string Settings(const json& d) {
  std::string s = "<table class=\"kv\">\n";
  Row(s, "rope dim (qk_rope_head_dim)",
      WithAuto(d, "rope_dim", "rope_dim_auto"));
  Row(s, "freqfold", WithAuto(d, "freqfold", "freqfold_auto"));
  Row(s, "kv_lora_rank", Opt(NumAt(d, "kv_lora_rank")));
  if (NumAt(d, "latent_refine")) {
    Row(s, "latent refinement rounds",
        WithAuto(d, "latent_refine", "latent_refine_auto"));
  }
  if (At(d, "o_proj_refit").is_boolean()) {
    Row(s, "o_proj refit",
        absl::StrCat(At(d, "o_proj_refit") == true ? "on" : "off",
                     At(d, "o_proj_refit_auto") == true ? " (auto)" : ""));
  }
  const auto w0 = NumAt(d, "kv_width_per_layer_before");
  const auto w1 = NumAt(d, "kv_width_per_layer_after");
  Row(s, "KV width per layer (numbers per token)",
      absl::StrCat(Opt(w0), " → ", Opt(w1),
                   w0 && w1 && *w0 > 0
                       ? absl::StrCat(" (", Percent(1 - *w1 / *w0), " saved)")
                       : "",
                   "; GQA 2·g·d<sub>h</sub> → kv_lora_rank + rope dim"));
  Row(s, "rope_theta written", Opt(NumAt(d, "rope_theta")));
  Row(s, "K/V balancing", Escape(StrAt(d, "balance_kv")));
  Row(s, "NoPE correction", Escape(StrAt(d, "nope_correction")));
  Row(s, "held-out scoring windows",
      absl::StrCat(Opt(NumAt(d, "scoring_windows")), " × ",
                   Opt(NumAt(d, "scoring_seq_len")), " tokens"));
  return absl::StrCat(
      "<section id=\"deepseek_v3\"><h2>DeepSeek-V3 layout</h2><p "
      "class=\"note\">A stock DeepseekV3ForCausalLM checkpoint: per layer "
      "the cache holds one joint latent of kv_lora_rank numbers and one "
      "RoPE key of rope-dim numbers shared by all heads.</p>",
      s, "</table></section>\n");
}

// NLLs: start the axis a little below the smallest value, the differences
// matter.
std::optional<double> NllAxisStart(const std::vector<double>& values) {
  double lo = INFINITY;
  for (double v : values) {
    if (std::isfinite(v)) lo = std::min(lo, v);
  }
  if (!std::isfinite(lo)) return std::nullopt;
  return std::floor(lo * 0.95 * 10) / 10;
}

std::string Steps(const json& r, const json& d) {
  struct Step {
    const char* name;
    const char* what;
    std::optional<double> nll, ppl;
  };
  std::vector<Step> steps = {{"original", "the GQA model",
                              NumAt(d, "heldout_nll_original"),
                              NumAt(At(r, "original"), "ppl")}};
  if (std::optional<double> fold = NumAt(d, "eval_ppl_qk_norm_fold")) {
    // Qwen3: the per-head q/k norms replaced by their folds (fold_only.h),
    // measured on the evaluation windows only.
    steps.push_back({"q/k norm fold only",
                     "the source with its per-head q_norm/k_norm replaced by "
                     "the folded scales: RoPE whole, no compression",
                     std::nullopt, fold});
  }
  steps.insert(
      steps.end(),
      {{"partial RoPE only",
        "the rope split at full latent rank: RoPE on rope-dim dims only, no "
        "compression",
        NumAt(d, "heldout_nll_partial_rope"),
        NumAt(d, "eval_ppl_partial_rope")},
       {"converted",
        "the rope split and the joint latent at kv_lora_rank: the written "
        "checkpoint",
        NumAt(At(r, "calibration"), "heldout_nll_converted"),
        NumAt(At(r, "converted"), "ppl")}});
  svg::HBarChart nll;
  nll.id = "steps";
  svg::HBarChart ppl;
  ppl.id = "steps_ppl";
  bool have_ppl = true;
  std::string table =
      "<table><tr><th>step</th><th>what it is</th><th class=\"n\">held-out "
      "NLL</th><th class=\"n\">perplexity</th></tr>\n";
  std::optional<double> previous_nll;  // the last step that has one
  for (const Step& st : steps) {
    if (st.nll) {
      nll.labels.push_back(st.name);
      nll.values.push_back(*st.nll);
      std::string text = absl::StrCat(Opt(st.nll), " nats");
      if (previous_nll) {
        absl::StrAppend(&text,
                        absl::StrFormat(" (%+.3g)", *st.nll - *previous_nll));
      }
      nll.value_text.push_back(text);
      previous_nll = st.nll;
    }
    have_ppl = have_ppl && st.ppl.has_value();
    ppl.labels.push_back(st.name);
    ppl.values.push_back(st.ppl.value_or(NAN));
    ppl.value_text.push_back(Opt(st.ppl));
    absl::StrAppend(&table, "<tr><td>", Escape(st.name), "</td><td>",
                    Escape(st.what), "</td><td class=\"n\">", Opt(st.nll),
                    "</td><td class=\"n\">", Opt(st.ppl), "</td></tr>\n");
  }
  // The last bar of each chart is the written checkpoint.
  nll.highlight = static_cast<int>(nll.values.size()) - 1;
  ppl.highlight = static_cast<int>(ppl.values.size()) - 1;
  nll.x_min = NllAxisStart(nll.values);
  std::string s = absl::StrCat(
      "<section id=\"steps\"><h2>Loss of each step</h2><p class=\"note\">"
      "Where the loss comes from: moving RoPE onto the rope-dim dims "
      "(partial RoPE only) and then compressing the rest into the joint "
      "latent (converted). Held-out NLL on the scoring windows (lower is "
      "better); perplexity on the evaluation windows.</p><h3>Held-out NLL "
      "(nats/token)</h3>",
      svg::RenderHBarChart(nll));
  if (have_ppl) {
    absl::StrAppend(&s, "<h3>Perplexity</h3>", svg::RenderHBarChart(ppl));
  }
  return absl::StrCat(s, table, "</table></section>\n");
}

std::string Candidates(const json& d) {
  const json& cands = At(d, "candidates");
  if (!cands.is_array() || cands.empty()) return "";
  svg::HBarChart chart;
  chart.id = "mla_candidates";
  std::string table =
      "<table><tr><th class=\"n\">rope dim</th><th class=\"n\">freqfold</th>"
      "<th class=\"n\">kv_lora_rank</th><th class=\"n\">refine</th>"
      "<th>o_proj refit</th><th class=\"n\">held-out NLL</th>"
      "<th class=\"n\">partial RoPE only</th></tr>\n";
  for (size_t i = 0; i < cands.size(); ++i) {
    const json& c = cands[i];
    const bool chosen = At(c, "chosen") == true;
    const double v = NumAt(c, "heldout_nll").value_or(NAN);
    const std::optional<double> refine = NumAt(c, "latent_refine");
    const bool refit = At(c, "o_proj_refit") == true;
    chart.labels.push_back(absl::StrCat(
        "rope ", StrAt(c, "rope_dim"), " · freqfold ", StrAt(c, "freqfold"),
        refine && *refine > 0 ? absl::StrCat(" · refine ", *refine) : "",
        refit ? " · o_proj refit" : ""));
    chart.values.push_back(v);
    chart.value_text.push_back(absl::StrCat(Num(v), " nats (rank ",
                                            StrAt(c, "kv_lora_rank"), ")",
                                            chosen ? " ← chosen" : ""));
    if (chosen) chart.highlight = static_cast<int>(i);
    absl::StrAppend(&table, chosen ? "<tr class=\"chosen\">" : "<tr>");
    for (const char* k :
         {"rope_dim", "freqfold", "kv_lora_rank", "latent_refine"}) {
      absl::StrAppend(&table, "<td class=\"n\">", Opt(NumAt(c, k)), "</td>");
    }
    absl::StrAppend(&table, "<td>", refit ? "yes" : "no", "</td>");
    for (const char* k : {"heldout_nll", "heldout_nll_partial_rope"}) {
      absl::StrAppend(&table, "<td class=\"n\">", Opt(NumAt(c, k)), "</td>");
    }
    table += "</tr>\n";
  }
  std::vector<double> axis = chart.values;
  if (auto original = NumAt(d, "heldout_nll_original")) {
    chart.references.push_back(
        {*original, absl::StrCat("original ", Num(*original))});
    axis.push_back(*original);
  }
  chart.x_min = NllAxisStart(axis);
  const bool automatic =
      At(d, "rope_dim_auto") == true || At(d, "freqfold_auto") == true ||
      At(d, "latent_refine_auto") == true || At(d, "o_proj_refit_auto") == true;
  return absl::StrCat(
      "<section id=\"mla_candidates\"><h2>Rope dim and freqfold "
      "candidates</h2><p class=\"note\">",
      automatic ? "<code>auto</code> fitted every (rope dim, freqfold) the "
                  "budget allows, with care each without and with the "
                  "latent refinement and the o_proj refit where those are "
                  "auto, and kept the best held-out NLL on the scoring "
                  "windows"
                : "The rope dim, freqfold, refinement and o_proj refit were "
                  "given: one candidate",
      "; the dashed line is the original model on the same tokens. "
      "\"Partial RoPE only\" is the same split at full latent rank.</p>",
      svg::RenderHBarChart(chart), table, "</table></section>\n");
}

std::string LayerCharts(const json& d) {
  const json& layers = At(d, "layers");
  if (!layers.is_array() || layers.empty()) return "";
  const std::vector<std::string> names = LayerNames(layers);
  auto chart = [&](const char* id, const char* y_label) {
    svg::BarChart c;
    c.id = id;
    c.y_label = y_label;
    c.x_label = "layer";
    c.categories = names;
    return c;
  };
  svg::BarChart err = chart("errors", "relative error");
  err.series = {{"K", kKColor, LayerValues(layers, "heldout_error_k")},
                {"V", kVColor, LayerValues(layers, "heldout_error_v")}};
  svg::BarChart energy = chart("energy", "retained energy");
  energy.y_max = 1.0;
  energy.series = {
      {"K_nope+V", kKColor, LayerValues(layers, "retained_energy")}};
  svg::BarChart rope = chart("rope_energy", "share of key energy");
  rope.y_max = 1.0;
  rope.series = {{"RoPE", kKColor, LayerValues(layers, "rope_energy")}};
  std::string s = absl::StrCat(
      "<section id=\"errors\"><h2>Held-out error per layer</h2><p "
      "class=\"note\">‖Y − Ŷ‖² / ‖Y‖² of each layer's keys (NoPE part from "
      "the joint latent, RoPE part exact) and values on held-out "
      "calibration tokens (lower is better).</p>",
      svg::RenderBarChart(err), "</section>\n",
      "<section id=\"energy\"><h2>Retained energy per layer</h2><p "
      "class=\"note\">Share of the method-scaled [K<sub>nope</sub>; V] "
      "spectrum's energy the joint latent keeps at kv_lora_rank.</p>",
      svg::RenderBarChart(energy), "</section>\n",
      "<section id=\"rope_split\"><h2>Rope split per layer</h2><p "
      "class=\"note\">Share of each layer's key energy the RoPE dims keep "
      "(RoRoPE concentrates it in the first rotated head)");
  if (At(d, "nope_correction") == true) {
    svg::BarChart nope = chart("nope_error", "relative score error");
    nope.series = {
        {"dropped", kVColor, LayerValues(layers, "nope_dropped_error")},
        {"corrected", kKColor, LayerValues(layers, "nope_corrected_error")}};
    absl::StrAppend(
        &s,
        ", and the attention-weighted error of the NoPE part's scores on the "
        "calibration windows with the rotation dropped and with the fitted "
        "correction: the rope split's per-layer loss.</p>",
        svg::RenderBarChart(rope), svg::RenderBarChart(nope));
  } else {
    absl::StrAppend(&s, ".</p>", svg::RenderBarChart(rope));
  }
  s += "</section>\n";
  const std::vector<double> refit_before =
      LayerValues(layers, "o_proj_error_before");
  if (std::any_of(refit_before.begin(), refit_before.end(),
                  [](double v) { return v > 0; })) {
    svg::BarChart refit = chart("o_proj_refit", "relative error");
    refit.series = {
        {"source o_proj", kVColor, refit_before},
        {"refit", kKColor, LayerValues(layers, "o_proj_error_after")}};
    absl::StrAppend(
        &s,
        "<section id=\"o_proj_refit\"><h2>o_proj refit per layer</h2><p "
        "class=\"note\">‖ŷ − y‖² / ‖y‖² of each layer's attention output "
        "after o_proj against the source layer's, on held-out windows: the "
        "export with the source's o_proj and with the refitted one (kept "
        "only where lower).</p>",
        svg::RenderBarChart(refit), "</section>\n");
  }
  return s;
}

std::string LayerTable(const json& d) {
  const json& layers = At(d, "layers");
  if (!layers.is_array() || layers.empty()) return "";
  std::string s =
      "<section id=\"layers\"><h2>Per-layer numbers</h2><table "
      "class=\"dense\"><tr><th>layer</th><th class=\"n\">held-out err "
      "K</th><th class=\"n\">held-out err V</th><th class=\"n\">calib err "
      "K</th><th class=\"n\">calib err V</th><th class=\"n\">retained "
      "energy</th><th class=\"n\">RoPE energy</th><th class=\"n\">NoPE err "
      "dropped</th><th class=\"n\">NoPE err corrected</th><th "
      "class=\"n\">β<sub>K</sub></th><th class=\"n\">log<sub>2</sub> "
      "1/α</th><th "
      "class=\"n\">norm err max</th><th class=\"n\">attn-out err</th><th "
      "class=\"n\">attn-out err, o_proj refit</th><th>note</th></tr>\n";
  const std::vector<std::string> names = LayerNames(layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    absl::StrAppend(&s, "<tr><td>", Escape(names[i]), "</td>");
    for (const char* k : {"heldout_error_k", "heldout_error_v", "calib_error_k",
                          "calib_error_v", "retained_energy", "rope_energy",
                          "nope_dropped_error", "nope_corrected_error",
                          "balance_k", "alpha_log2", "norm_error_max",
                          "o_proj_error_before", "o_proj_error_after"}) {
      absl::StrAppend(&s, "<td class=\"n\">", Opt(NumAt(l, k)), "</td>");
    }
    absl::StrAppend(&s, "<td>", Escape(StrAt(l, "note")), "</td></tr>\n");
  }
  return s + "</table></section>\n";
}

}  // namespace

std::string MlaSections(const json& r) {
  const json& d = At(r, "deepseek_v3");
  if (!d.is_object()) return "";
  std::string s = absl::StrCat(Settings(d), Steps(r, d), Candidates(d),
                               LayerCharts(d), LayerTable(d), HealSection(d));
  const std::string rest = ObjectFields("deepseek_v3", d, KnownFields());
  if (!rest.empty()) {
    absl::StrAppend(&s,
                    "<section id=\"deepseek_v3_more\"><h2>More DeepSeek-V3 "
                    "results</h2>",
                    rest, "</section>\n");
  }
  return s;
}

}  // namespace care::convert
