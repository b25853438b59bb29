#include "care/convert/report_html.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "care/convert/report_html_mla.h"
#include "care/convert/report_html_util.h"
#include "care/convert/svg_chart.h"

namespace care::convert {
namespace {

using html::At;
using html::Card;
using html::Code;
using html::IntList;
using html::kKColor;
using html::kVColor;
using html::LayerNames;
using html::LayerValues;
using html::NumAt;
using html::ObjectArray;
using html::ObjectFields;
using html::Opt;
using html::Percent;
using html::RangeText;
using html::Row;
using html::ScalarText;
using html::StrAt;
using nlohmann::json;
using svg::Escape;
using svg::Num;

constexpr char kStyle[] = R"css(
:root { --ink: #1d2733; --muted: #5b6675; --line: #d9dee5; --card: #f5f7fa;
  --accent: #d1495b; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
  "DejaVu Sans", sans-serif; color: var(--ink); margin: 0; background: #fff; }
main { max-width: 980px; margin: 0 auto; padding: 28px 24px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 6px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
p.sub, p.note { color: var(--muted); margin: 2px 0 10px; }
code { font: 12.5px ui-monospace, "DejaVu Sans Mono", monospace;
  overflow-wrap: anywhere; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr));
  gap: 12px; margin: 18px 0 6px; }
.card { background: var(--card); border: 1px solid var(--line);
  border-radius: 8px; padding: 10px 14px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase;
  letter-spacing: .04em; }
.card .v { font-size: 21px; font-weight: 600; margin-top: 2px; }
.card .d { color: var(--muted); font-size: 12.5px; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; }
th, td { text-align: left; padding: 4px 10px 4px 0;
  border-bottom: 1px solid var(--line); vertical-align: top; }
/* Nothing wider than the page: long field names, values and unbroken
   strings (paths, JSON) wrap anywhere rather than widen their table. */
main, th, td { overflow-wrap: anywhere; }
td.n { overflow-wrap: normal; white-space: nowrap; }
table.dense { font-size: 12.5px; }
table.dense th, table.dense td { padding-right: 8px; }
th { color: var(--muted); font-weight: 600; font-size: 12.5px; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 230px; }
tr.chosen td { font-weight: 600; color: var(--accent); }
svg.chart { width: 100%; height: auto; display: block; margin: 6px 0 2px; }
svg .grid { stroke: #e8ebf0; } svg .axis { stroke: #8a94a3; }
svg .tick { font-size: 11px; fill: var(--muted); }
svg .axis-label, svg .legend { font-size: 12px; fill: var(--ink); }
svg .ref { stroke: var(--accent); stroke-dasharray: 5 4; stroke-width: 1.3; }
svg .ref-label { font-size: 11px; fill: var(--accent); paint-order: stroke;
  stroke: #fff; stroke-width: 3px; }
svg .line { fill: none; stroke-width: 1.8; }
svg .hlabel, svg .hvalue { font-size: 12.5px; fill: var(--ink); }
svg .strong { font-weight: 700; fill: var(--accent); }
h3 { font-size: 13.5px; margin: 12px 0 0; color: var(--muted); }
footer { margin-top: 36px; color: var(--muted); font-size: 12px; }
@media print { main { max-width: none; padding: 0; }
  section, .card, svg.chart { break-inside: avoid; } h2 { break-after: avoid; }
  table.dense { font-size: 10.5px; } }
)css";

// ---- sections ----

std::string Summary(const json& r) {
  std::string s = "<div class=\"cards\">\n";
  const auto before = NumAt(r, "kv_width_before");
  const auto after = NumAt(r, "kv_width_after");
  if (before && after) {
    s += Card("KV cache per token",
              absl::StrCat(Num(*before), " → ", Num(*after)),
              *before > 0 ? absl::StrCat(Percent(1 - *after / *before),
                                         " saved (", StrAt(r, "budget"), ")")
                          : StrAt(r, "budget"));
  }
  const auto p0 = NumAt(At(r, "original"), "ppl");
  const auto p1 = NumAt(At(r, "converted"), "ppl");
  if (p0 && p1) {
    s += Card("Perplexity", absl::StrCat(Num(*p0), " → ", Num(*p1)),
              absl::StrFormat("%+.1f %% on the evaluation windows",
                              *p0 > 0 ? 100 * (*p1 / *p0 - 1) : 0.0));
  }
  const json& calib = At(r, "calibration");
  const auto h0 = NumAt(calib, "heldout_nll_original");
  const auto h1 = NumAt(calib, "heldout_nll_converted");
  if (h0 && h1) {
    s += Card("Held-out NLL (nats)", absl::StrCat(Num(*h0), " → ", Num(*h1)),
              "calibration held-out slice");
  }
  const std::string alloc = StrAt(r, "allocation");
  const std::string chosen = StrAt(r, "allocation_chosen");
  s += Card("Method", absl::StrCat(StrAt(r, "method"), " · ", alloc),
            chosen.empty() || chosen == alloc
                ? std::string("allocation")
                : absl::StrCat("allocation used: ", chosen));
  return s + "</div>\n";
}

std::string Details(const json& r) {
  std::string s = "<table class=\"kv\">\n";
  Row(s, "model", Code(StrAt(r, "model")));
  Row(s, "output", Code(StrAt(r, "output_dir")));
  Row(s, "architecture", Escape(StrAt(r, "architecture")));
  const std::string layout = StrAt(r, "layout");
  Row(s, "layout", Escape(layout.empty() ? "latent" : layout));
  Row(s, "method", Escape(StrAt(r, "method")));
  std::string alloc = Escape(StrAt(r, "allocation"));
  if (!StrAt(r, "allocation_chosen").empty()) {
    absl::StrAppend(&alloc, " (used: ", Escape(StrAt(r, "allocation_chosen")),
                    ")");
  }
  Row(s, "allocation", alloc);
  Row(s, "budget",
      absl::StrCat(Escape(StrAt(r, "budget")), "; budget width ",
                   Opt(NumAt(r, "kv_budget_width"))));
  const auto before = NumAt(r, "kv_width_before");
  const auto after = NumAt(r, "kv_width_after");
  Row(s, "KV width (numbers per token)",
      absl::StrCat(
          Opt(before), " → ", Opt(after),
          before && after && *before > 0
              ? absl::StrCat(" (", Percent(1 - *after / *before), " saved)")
              : ""));
  Row(s, "layers", Opt(NumAt(r, "num_layers")));
  Row(s, "damping", Opt(NumAt(r, "damping")));
  Row(s, "sequential calibration", Escape(StrAt(r, "sequential")));
  const json& c = At(r, "calibration");
  if (c.is_object()) {
    Row(s, "calibration data", Code(StrAt(c, "data")));
    const json& range = At(c, "range");
    const json& held = At(c, "heldout_range");
    Row(s, "calibration windows",
        absl::StrCat(Opt(NumAt(c, "samples")), " × ", Opt(NumAt(c, "seq_len")),
                     " tokens, seed ", Escape(StrAt(c, "seed")),
                     ", from tokens ", Escape(RangeText(range)), "; held out ",
                     Escape(RangeText(held)), " (",
                     Opt(NumAt(c, "heldout_tokens")), " tokens)"));
    Row(s, "held-out NLL",
        absl::StrCat(Opt(NumAt(c, "heldout_nll_original")), " → ",
                     Opt(NumAt(c, "heldout_nll_converted"))));
  }
  const json& e = At(r, "evaluation");
  const json& o = At(r, "original");
  const json& v = At(r, "converted");
  if (e.is_object()) {
    Row(s, "evaluation data", Code(StrAt(e, "data")));
    Row(s, "evaluation windows",
        absl::StrCat(Opt(NumAt(o, "windows")), " × ", Opt(NumAt(e, "seq_len")),
                     " tokens from ", Escape(RangeText(At(e, "range"))), " (",
                     Opt(NumAt(o, "predictions")), " predictions)"));
  }
  if (o.is_object() && v.is_object()) {
    Row(s, "perplexity",
        absl::StrCat(Opt(NumAt(o, "ppl")), " → ", Opt(NumAt(v, "ppl"))));
    Row(s, "mean NLL (nats/token)",
        absl::StrCat(Opt(NumAt(o, "mean_nll")), " → ",
                     Opt(NumAt(v, "mean_nll"))));
  }
  // Task accuracy and rolling perplexity before → after (their full
  // numbers, standard errors included, are in the tables further down).
  const json& tasks = At(r, "tasks");
  for (const json& t : tasks.is_array() ? tasks : json::array()) {
    const json& t0 = At(t, "original");
    const json& t1 = At(t, "converted");
    Row(s,
        absl::StrCat("task ", StrAt(t, "name"), " (", StrAt(t, "items"),
                     " items)"),
        absl::StrCat("acc ", Opt(NumAt(t0, "acc")), " → ",
                     Opt(NumAt(t1, "acc")), ", acc_norm ",
                     Opt(NumAt(t0, "acc_norm")), " → ",
                     Opt(NumAt(t1, "acc_norm"))));
  }
  const json& rolling = At(r, "rolling");
  if (rolling.is_object()) {
    const json& r0 = At(rolling, "original");
    const json& r1 = At(rolling, "converted");
    Row(s, "rolling perplexity",
        absl::StrCat("token ", Opt(NumAt(r0, "token_perplexity")), " → ",
                     Opt(NumAt(r1, "token_perplexity")), ", word ",
                     Opt(NumAt(r0, "word_perplexity")), " → ",
                     Opt(NumAt(r1, "word_perplexity")), ", byte ",
                     Opt(NumAt(r0, "byte_perplexity")), " → ",
                     Opt(NumAt(r1, "byte_perplexity"))));
  }
  if (auto resumed = NumAt(r, "resumed_layers"); resumed && *resumed > 0) {
    Row(s, "resumed calibration layers", Num(*resumed));
  }
  return s + "</table>\n";
}

std::string Timings(const json& r) {
  const json& t = At(r, "timings_s");
  const json& f = At(r, "flops");
  if (!t.is_object() || t.empty()) return "";
  static const char* kOrder[] = {"load",     "calibrate",  "decompose",
                                 "allocate", "sequential", "evaluate",
                                 "write"};
  std::vector<std::string> stages;
  for (const char* k : kOrder) {
    if (t.contains(k)) stages.push_back(k);
  }
  for (const auto& [k, v] : t.items()) {
    if (std::find(stages.begin(), stages.end(), k) == stages.end()) {
      stages.push_back(k);
    }
  }
  svg::HBarChart chart;
  chart.id = "timings";
  double total = 0;
  for (const std::string& k : stages) {
    const double sec = t[k].is_number() ? t[k].get<double>() : 0;
    const auto flops = NumAt(f, k.c_str());
    total += sec;
    chart.labels.push_back(k);
    chart.values.push_back(sec);
    chart.value_text.push_back(
        flops && *flops > 0 && sec > 0
            ? absl::StrFormat("%.3g s · %.3g GFLOP/s", sec, *flops / sec / 1e9)
            : absl::StrFormat("%.3g s", sec));
  }
  return absl::StrCat(
      "<section id=\"timings\"><h2>Time per stage</h2><p class=\"note\">",
      absl::StrFormat("%.3g s", total),
      " in the stages recorded when the report was written (the write stage "
      "itself finishes after it); rates are useful FLOPs per second.</p>",
      svg::RenderHBarChart(chart), "</section>\n");
}

std::string LayerCharts(const json& r) {
  const json& layers = At(r, "layers");
  if (!layers.is_array() || layers.empty()) return "";
  const std::vector<std::string> names = LayerNames(layers);
  std::string s;

  svg::BarChart ranks;
  ranks.id = "ranks";
  ranks.y_label = "latent rank";
  ranks.categories = names;
  ranks.x_label = "layer";
  ranks.series = {{"K", kKColor, LayerValues(layers, "rank_k")},
                  {"V", kVColor, LayerValues(layers, "rank_v")}};
  const auto budget = NumAt(r, "kv_budget_width");
  if (budget && !layers.empty()) {
    const double average = *budget / (2.0 * layers.size());
    ranks.references.push_back(
        {average, absl::StrCat("budget average ", Num(average))});
  }
  const auto max_rank = NumAt(At(layers[0], "spectrum_k"), "size");
  if (max_rank) {
    ranks.references.push_back(
        {*max_rank, absl::StrCat("full rank ", Num(*max_rank))});
  }
  absl::StrAppend(
      &s,
      "<section id=\"ranks\"><h2>Latent rank per layer</h2><p "
      "class=\"note\">Bars: the "
      "rank kept for K and V in each layer (x: layer). Dashed: the average "
      "the budget allows per matrix, and the full rank.</p>",
      svg::RenderBarChart(ranks), "</section>\n");

  svg::BarChart err;
  err.id = "errors";
  err.y_label = "relative error";
  err.categories = names;
  err.x_label = "layer";
  err.series = {{"K", kKColor, LayerValues(layers, "heldout_error_k")},
                {"V", kVColor, LayerValues(layers, "heldout_error_v")}};
  svg::BarChart energy;
  energy.id = "energy";
  energy.y_label = "retained energy";
  energy.categories = names;
  energy.x_label = "layer";
  energy.y_max = 1.0;
  energy.series = {{"K", kKColor, LayerValues(layers, "retained_energy_k")},
                   {"V", kVColor, LayerValues(layers, "retained_energy_v")}};
  absl::StrAppend(
      &s,
      "<section id=\"errors\"><h2>Held-out error per layer</h2><p "
      "class=\"note\">"
      "‖X(W − Ŵ)‖² / ‖XW‖² of each layer's K and V projection on held-out "
      "calibration tokens (lower is better).</p>",
      svg::RenderBarChart(err), "</section>\n",
      "<section id=\"energy\"><h2>Retained energy per layer</h2><p "
      "class=\"note\">Share "
      "of the (method-scaled) spectrum's energy Σ<sub>i≤r</sub>σ²/Σσ² that "
      "the kept rank holds.</p>",
      svg::RenderBarChart(energy), "</section>\n");
  return s;
}

// σ_i² / Σσ² per kept position (from the sampled spectrum and its
// cumulative energy), one line per layer, a dot at the kept rank.
svg::LineChart SpectrumChart(const json& layers, const char* spectrum_key,
                             const char* rank_key, const std::string& id) {
  svg::LineChart chart;
  chart.id = id;
  chart.log_y = true;
  chart.x_label = "singular value position";
  chart.y_label = "σᵢ² / Σσ²";
  const std::vector<std::string> names = LayerNames(layers);
  for (size_t l = 0; l < layers.size(); ++l) {
    const json& sp = At(layers[l], spectrum_key);
    const json& idx = At(sp, "index");
    const json& sigma = At(sp, "sigma");
    const json& energy = At(sp, "energy");
    if (!idx.is_array() || !sigma.is_array() || !energy.is_array() ||
        idx.empty() || idx.size() != sigma.size() ||
        energy.size() != sigma.size() || !sigma[0].is_number() ||
        !energy[0].is_number()) {
      continue;
    }
    const double s0 = sigma[0].get<double>();
    const double e0 = energy[0].get<double>();
    if (!(s0 > 0) || !(e0 > 0)) continue;
    const double total = s0 * s0 / e0;  // Σσ²
    svg::Line line;
    line.name = absl::StrCat("layer ", names[l]);
    line.color =
        svg::PaletteColor(static_cast<int>(l), static_cast<int>(layers.size()));
    for (size_t i = 0; i < idx.size(); ++i) {
      if (!idx[i].is_number() || !sigma[i].is_number()) continue;
      const double sv = sigma[i].get<double>();
      line.x.push_back(idx[i].get<double>() + 1);  // 1-based position
      line.y.push_back(sv * sv / total);
    }
    if (auto r = NumAt(layers[l], rank_key); r && *r >= 1) line.marker_x = *r;
    chart.lines.push_back(std::move(line));
  }
  return chart;
}

std::string Spectra(const json& r) {
  const json& layers = At(r, "layers");
  if (!layers.is_array() || layers.empty() ||
      !At(layers[0], "spectrum_k").is_object()) {
    return "";
  }
  const svg::LineChart k =
      SpectrumChart(layers, "spectrum_k", "rank_k", "spectrum_k");
  const svg::LineChart v =
      SpectrumChart(layers, "spectrum_v", "rank_v", "spectrum_v");
  return absl::StrCat(
      "<section id=\"spectra\"><h2>Spectra the allocation used</h2><p "
      "class=\"note\">Each "
      "layer's singular values of the method-scaled K and V projections "
      "(for care: whitened by the input covariance), as shares of the "
      "layer's energy; the dot marks the rank kept. The allocation "
      "compares these tails across layers.</p><h3>K</h3>",
      svg::RenderLineChart(k), "<h3>V</h3>", svg::RenderLineChart(v),
      "</section>\n");
}

std::string Candidates(const json& r) {
  const json& cands = At(r, "candidates");
  if (!cands.is_array() || cands.empty()) return "";
  svg::HBarChart chart;
  chart.id = "candidates";
  double lo = INFINITY;
  for (size_t i = 0; i < cands.size(); ++i) {
    const double nll = NumAt(cands[i], "heldout_nll").value_or(NAN);
    chart.labels.push_back(StrAt(cands[i], "name"));
    chart.values.push_back(nll);
    chart.value_text.push_back(absl::StrCat(
        Num(nll), " nats", At(cands[i], "chosen") == true ? " ← chosen" : ""));
    if (At(cands[i], "chosen") == true) chart.highlight = static_cast<int>(i);
    if (std::isfinite(nll)) lo = std::min(lo, nll);
  }
  const auto original = NumAt(At(r, "calibration"), "heldout_nll_original");
  if (original) {
    chart.references.push_back(
        {*original, absl::StrCat("original ", Num(*original))});
    lo = std::min(lo, *original);
  }
  // Start the axis a little below the best score: the differences matter.
  if (std::isfinite(lo)) chart.x_min = std::floor(lo * 0.95 * 10) / 10;
  std::string s = absl::StrCat(
      "<section id=\"candidates\"><h2>Allocation candidates</h2><p "
      "class=\"note\">Held-out "
      "calibration NLL of every rank allocation scored (lower is better); "
      "the chosen one is highlighted, the dashed line is the original "
      "model on the same tokens.</p>",
      svg::RenderHBarChart(chart),
      "<table><tr><th>candidate</th><th class=\"n\">held-out NLL</th>"
      "<th>r<sub>K</sub> per layer</th><th>r<sub>V</sub> per layer</th></tr>"
      "\n");
  for (const json& c : cands) {
    absl::StrAppend(&s, "<tr",
                    At(c, "chosen") == true ? " class=\"chosen\"" : "", "><td>",
                    Escape(StrAt(c, "name")), "</td><td class=\"n\">",
                    Opt(NumAt(c, "heldout_nll")), "</td><td><code>",
                    Escape(IntList(At(c, "rank_k"))), "</code></td><td><code>",
                    Escape(IntList(At(c, "rank_v"))), "</code></td></tr>\n");
  }
  return s + "</table></section>\n";
}

std::string LayerTable(const json& r) {
  const json& layers = At(r, "layers");
  if (!layers.is_array() || layers.empty()) return "";
  std::string s =
      "<section id=\"layers\"><h2>Per-layer "
      "numbers</h2><table><tr><th>layer</th>"
      "<th class=\"n\">r<sub>K</sub></th><th class=\"n\">r<sub>V</sub></th>"
      "<th class=\"n\">held-out err K</th><th class=\"n\">held-out err V</th>"
      "<th class=\"n\">calib err K</th><th class=\"n\">calib err V</th>"
      "<th class=\"n\">energy K</th><th class=\"n\">energy V</th>"
      "<th>note</th></tr>\n";
  const std::vector<std::string> names = LayerNames(layers);
  for (size_t i = 0; i < layers.size(); ++i) {
    const json& l = layers[i];
    absl::StrAppend(&s, "<tr><td>", Escape(names[i]), "</td>");
    for (const char* k : {"rank_k", "rank_v", "heldout_error_k",
                          "heldout_error_v", "calib_error_k", "calib_error_v",
                          "retained_energy_k", "retained_energy_v"}) {
      absl::StrAppend(&s, "<td class=\"n\">", Opt(NumAt(l, k)), "</td>");
    }
    absl::StrAppend(&s, "<td>", Escape(StrAt(l, "note")), "</td></tr>\n");
  }
  return s + "</table></section>\n";
}

// Every top-level field this renderer has no section for (other output
// layouts, task evaluations): shown, never dropped.
std::string Extras(const json& r) {
  static const std::set<std::string> kKnown = {
      "model",           "output_dir",        "architecture",
      "method",          "allocation",        "allocation_chosen",
      "budget",          "damping",           "sequential",
      "num_layers",      "kv_width_before",   "kv_width_after",
      "kv_budget_width", "kv_saved_fraction", "calibration",
      "evaluation",      "original",          "converted",
      "layers",          "candidates",        "timings_s",
      "flops",           "resumed_layers",    "layout",
      "deepseek_v3"};  // MlaSections (report_html_mla.h)
  if (!r.is_object()) return "";
  std::string s;
  for (const auto& [key, value] : r.items()) {
    if (kKnown.count(key) > 0) continue;
    absl::StrAppend(&s, "<section><h2>", Escape(key), "</h2>\n");
    if (value.is_array() && !value.empty() &&
        std::all_of(value.begin(), value.end(),
                    [](const json& x) { return x.is_object(); })) {
      s += ObjectArray(key, value);
    } else if (value.is_object()) {
      s += ObjectFields(key, value);
    } else {
      absl::StrAppend(&s, "<p>", Escape(ScalarText(value)), "</p>\n");
    }
    s += "</section>\n";
  }
  return s;
}

}  // namespace

std::string ReportHtml(const json& r) {
  std::string s = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, "
      "initial-scale=1\"><title>CARE-MLA report: ",
      Escape(StrAt(r, "model")), "</title><style>", kStyle,
      "</style></head>\n<body><main>\n<h1>CARE-MLA conversion report</h1>\n"
      "<p class=\"sub\">",
      Code(StrAt(r, "model")), " → ", Code(StrAt(r, "output_dir")), "</p>\n");
  s += Summary(r);
  absl::StrAppend(&s, "<section id=\"summary\"><h2>Summary</h2>", Details(r),
                  "</section>\n");
  s += Timings(r);
  if (At(r, "deepseek_v3").is_object()) {
    // One joint latent of one rank: its own per-layer sections.
    s += MlaSections(r);
  } else {
    s += LayerCharts(r);
    s += Spectra(r);
    s += Candidates(r);
    s += LayerTable(r);
  }
  s += Extras(r);
  s += "<footer>Written by CARE-MLA with care_report.json (same numbers, "
       "full precision). Self-contained: no scripts, no network.</footer>\n"
       "</main></body></html>\n";
  return s;
}

ReportFiles RenderReportFiles(const ConversionReport& report) {
  const json j = ReportToJson(report);
  return {j.dump(2), ReportHtml(j)};
}

}  // namespace care::convert
