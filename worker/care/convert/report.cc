#include "care/convert/report.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace care::convert {
namespace {

nlohmann::json TaskScoreJson(const TaskScore& t) {
  return {{"acc", t.acc},
          {"acc_stderr", t.acc_stderr},
          {"acc_norm", t.acc_norm},
          {"acc_norm_stderr", t.acc_norm_stderr}};
}

nlohmann::json RollingJson(const RollingReport& r) {
  return {{"documents", r.documents},
          {"windows", r.windows},
          {"predictions", r.predictions},
          {"words", r.words},
          {"bytes", r.bytes},
          {"token_perplexity", r.token_perplexity},
          {"word_perplexity", r.word_perplexity},
          {"byte_perplexity", r.byte_perplexity},
          {"bits_per_byte", r.bits_per_byte}};
}

nlohmann::json PplJson(const PerplexityReport& p) {
  return {{"ppl", p.ppl},
          {"mean_nll", p.mean_nll},
          {"windows", p.windows},
          {"predictions", p.predictions}};
}

nlohmann::json SpectrumJson(const SpectrumReport& s) {
  return {{"size", s.size},
          {"index", s.index},
          {"sigma", s.sigma},
          {"energy", s.energy}};
}

}  // namespace

nlohmann::json ReportToJson(const ConversionReport& r) {
  nlohmann::json j;
  j["model"] = r.model;
  j["output_dir"] = r.output_dir;
  j["architecture"] = r.architecture;
  j["layout"] = r.layout;
  j["method"] = r.method;
  j["allocation"] = r.allocation;
  j["allocation_chosen"] = r.allocation_chosen;
  j["budget"] = r.budget;
  j["damping"] = r.damping;
  j["sequential"] = r.sequential;
  j["num_layers"] = r.num_layers;
  j["kv_width_before"] = r.kv_width_before;
  j["kv_width_after"] = r.kv_width_after;
  j["kv_budget_width"] = r.budget_width;
  j["kv_saved_fraction"] =
      r.kv_width_before > 0
          ? 1.0 - static_cast<double>(r.kv_width_after) / r.kv_width_before
          : 0.0;
  j["calibration"] = {
      {"data", r.calib_data},
      {"samples", r.calib_samples},
      {"seq_len", r.calib_seq_len},
      {"seed", r.seed},
      {"range", {r.calib_range_begin, r.calib_range_end}},
      {"heldout_range", {r.heldout_range_begin, r.heldout_range_end}},
      {"tokens", r.calib_tokens},
      {"heldout_tokens", r.heldout_tokens},
      {"heldout_run", r.heldout_run},
      {"heldout_reason", r.heldout_reason}};
  if (r.heldout_run) {
    j["calibration"]["heldout_nll_original"] = r.heldout_nll_original;
    j["calibration"]["heldout_nll_converted"] = r.heldout_nll_converted;
  }
  if (!r.eval_data.empty()) {
    j["evaluation"] = {{"data", r.eval_data},
                       {"range", {r.eval_range_begin, r.eval_range_end}},
                       {"seq_len", r.eval_seq_len}};
  }
  if (r.original) j["original"] = PplJson(*r.original);
  if (r.converted) j["converted"] = PplJson(*r.converted);
  if (r.rolling_original && r.rolling_converted) {
    j["rolling"] = {{"max_length", r.rolling_max_length},
                    {"stride", r.rolling_stride},
                    {"original", RollingJson(*r.rolling_original)},
                    {"converted", RollingJson(*r.rolling_converted)}};
  }
  if (!r.tasks.empty()) {
    nlohmann::json tasks = nlohmann::json::array();
    for (const TaskAccuracyReport& t : r.tasks) {
      tasks.push_back({{"name", t.name},
                       {"path", t.path},
                       {"format", t.format},
                       {"items", t.items},
                       {"original", TaskScoreJson(t.original)},
                       {"converted", TaskScoreJson(t.converted)}});
    }
    j["tasks"] = std::move(tasks);
  }
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < r.layers.size(); ++l) {
    const LayerReport& x = r.layers[l];
    nlohmann::json lj = {{"layer", l},
                         {"rank_k", x.rank_k},
                         {"rank_v", x.rank_v},
                         {"calib_error_k", x.calib_error_k},
                         {"calib_error_v", x.calib_error_v},
                         {"retained_energy_k", x.retained_energy_k},
                         {"retained_energy_v", x.retained_energy_v}};
    if (r.heldout_run) {
      lj["heldout_error_k"] = x.heldout_error_k;
      lj["heldout_error_v"] = x.heldout_error_v;
    }
    if (x.rope_energy) lj["rope_energy"] = *x.rope_energy;
    if (x.nope_score_error) lj["nope_score_error"] = *x.nope_score_error;
    if (!x.note.empty()) lj["note"] = x.note;
    if (x.spectrum_k.size > 0) lj["spectrum_k"] = SpectrumJson(x.spectrum_k);
    if (x.spectrum_v.size > 0) lj["spectrum_v"] = SpectrumJson(x.spectrum_v);
    layers.push_back(std::move(lj));
  }
  j["layers"] = std::move(layers);
  nlohmann::json cands = nlohmann::json::array();
  for (const CandidateReport& c : r.candidates) {
    nlohmann::json cj = {{"name", c.name},
                         {"chosen", c.chosen},
                         {"rank_k", c.rank_k},
                         {"rank_v", c.rank_v}};
    if (r.heldout_run) cj["heldout_nll"] = c.heldout_nll;
    cands.push_back(std::move(cj));
  }
  j["candidates"] = std::move(cands);
  nlohmann::json timings = nlohmann::json::object();
  nlohmann::json flops = nlohmann::json::object();
  for (const StageTiming& t : r.timings) {
    timings[t.stage] = t.seconds;
    flops[t.stage] = t.flops;
  }
  j["timings_s"] = std::move(timings);
  j["flops"] = std::move(flops);
  j["resumed_layers"] = r.resumed_layers;
  if (r.deepseek_v3) j["deepseek_v3"] = MlaReportToJson(*r.deepseek_v3);
  return j;
}

std::string ReportSummary(const ConversionReport& r) {
  std::string s = absl::StrFormat(
      "converted %s -> %s\n  method %s, allocation %s (%s), %s, damping %g\n"
      "  KV cache per token: %d -> %d numbers (%.1f%% saved)\n",
      r.model, r.output_dir, r.method, r.allocation, r.allocation_chosen,
      r.budget, r.damping, r.kv_width_before, r.kv_width_after,
      r.kv_width_before > 0
          ? 100.0 * (1.0 -
                     static_cast<double>(r.kv_width_after) / r.kv_width_before)
          : 0.0);
  std::vector<std::string> rk, rv;
  for (const LayerReport& l : r.layers) {
    rk.push_back(absl::StrCat(l.rank_k));
    rv.push_back(absl::StrCat(l.rank_v));
  }
  if (r.deepseek_v3) {
    absl::StrAppend(&s, MlaReportSummary(*r.deepseek_v3));
  } else {
    absl::StrAppend(&s, "  r_K: ", absl::StrJoin(rk, " "),
                    "\n  r_V: ", absl::StrJoin(rv, " "), "\n");
  }
  if (r.heldout_run) {
    absl::StrAppendFormat(&s, "  held-out calibration NLL: %.4f -> %.4f\n",
                          r.heldout_nll_original, r.heldout_nll_converted);
    for (const CandidateReport& c : r.candidates) {
      absl::StrAppendFormat(&s, "    candidate %-16s NLL %.4f%s\n", c.name,
                            c.heldout_nll, c.chosen ? "  <- chosen" : "");
    }
  } else {
    absl::StrAppend(&s,
                    "  held-out windows: not run (not needed by this "
                    "allocation; --heldout runs them)\n");
  }
  if (r.original && r.converted) {
    absl::StrAppendFormat(
        &s, "  perplexity (%d windows x %d): original %.4f, converted %.4f\n",
        r.original->windows, r.eval_seq_len, r.original->ppl, r.converted->ppl);
  }
  if (r.rolling_original && r.rolling_converted) {
    absl::StrAppendFormat(
        &s,
        "  rolling perplexity (%d documents, window %d, stride %d): token "
        "%.4f -> %.4f, word %.4f -> %.4f, byte %.4f -> %.4f\n",
        r.rolling_original->documents, r.rolling_max_length, r.rolling_stride,
        r.rolling_original->token_perplexity,
        r.rolling_converted->token_perplexity,
        r.rolling_original->word_perplexity,
        r.rolling_converted->word_perplexity,
        r.rolling_original->byte_perplexity,
        r.rolling_converted->byte_perplexity);
  }
  for (const TaskAccuracyReport& x : r.tasks) {
    absl::StrAppendFormat(
        &s, "  task %s (%d items): acc %.4f -> %.4f, acc_norm %.4f -> %.4f\n",
        x.name, x.items, x.original.acc, x.converted.acc, x.original.acc_norm,
        x.converted.acc_norm);
  }
  std::vector<std::string> t;
  for (const StageTiming& x : r.timings) {
    if (x.flops > 0 && x.seconds > 0) {
      t.push_back(absl::StrFormat("%s %.2fs (%.1f GFLOP/s)", x.stage, x.seconds,
                                  x.flops / x.seconds / 1e9));
    } else {
      t.push_back(absl::StrFormat("%s %.2fs", x.stage, x.seconds));
    }
  }
  absl::StrAppend(&s, "  time: ", absl::StrJoin(t, ", "), "\n");
  if (r.resumed_layers > 0) {
    absl::StrAppendFormat(&s, "  resumed: %d of %d calibration layers\n",
                          r.resumed_layers, r.num_layers);
  }
  return s;
}

}  // namespace care::convert
