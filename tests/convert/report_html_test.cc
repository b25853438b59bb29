// The HTML report and the sampled spectra behind it: the sampler against a
// direct computation, the page's structure and escaping on hand-made
// reports, and a real conversion of the fixture model writing the page.
#include "care/convert/report_html.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "care/convert/pipeline.h"
#include "care/convert/report.h"
#include "care/convert/spectrum_sample.h"
#include "care/convert/svg_chart.h"
#include "convert/pipeline_test_util.h"
#include "support/fixtures.h"

namespace care::convert {
namespace {

int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t p = text.find(needle); p != std::string::npos;
       p = text.find(needle, p + needle.size())) {
    ++n;
  }
  return n;
}

// The markup of <svg ... data-chart="id"> ... </svg>.
std::string Chart(const std::string& html, const std::string& id) {
  const size_t begin = html.find("data-chart=\"" + id + "\"");
  if (begin == std::string::npos) return "";
  const size_t end = html.find("</svg>", begin);
  return html.substr(begin, end - begin);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(SampleSpectrumTest, ShortSpectrumKeptWhole) {
  const std::vector<double> sigma = {4, 2, 1, 0};
  const SpectrumReport s = SampleSpectrum(sigma.data(), 4, 64);
  EXPECT_EQ(s.size, 4);
  EXPECT_EQ(s.index, (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(s.sigma, sigma);
  // Σσ² = 21: cumulative 16, 20, 21, 21 (exact in binary floating point
  // up to one rounding of each quotient).
  ASSERT_EQ(s.energy.size(), 4u);
  EXPECT_DOUBLE_EQ(s.energy[0], 16.0 / 21);
  EXPECT_DOUBLE_EQ(s.energy[1], 20.0 / 21);
  EXPECT_DOUBLE_EQ(s.energy[3], 1.0);
}

TEST(SampleSpectrumTest, LongSpectrumBoundedAndExact) {
  const int64_t n = 4096;
  std::vector<double> sigma(n);
  for (int64_t i = 0; i < n; ++i) sigma[i] = 1.0 / (1.0 + i);
  const SpectrumReport s = SampleSpectrum(sigma.data(), n, 64);
  EXPECT_EQ(s.size, n);
  ASSERT_EQ(s.index.size(), 64u);
  EXPECT_EQ(s.index.front(), 0);
  EXPECT_EQ(s.index.back(), n - 1);
  // The head keeps its detail: the first positions are all present.
  for (int i = 0; i < 8; ++i) EXPECT_EQ(s.index[i], i);
  double total = 0;
  for (double x : sigma) total += x * x;
  for (size_t i = 0; i < s.index.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(s.index[i], s.index[i - 1]);
    }
    EXPECT_EQ(s.sigma[i], sigma[s.index[i]]);
    // Independent sum: a 4096-term sum of positive doubles agrees to ~1e-13
    // relative whatever the order.
    double partial = 0;
    for (int64_t j = 0; j <= s.index[i]; ++j) partial += sigma[j] * sigma[j];
    EXPECT_NEAR(s.energy[i], partial / total, 1e-12);
  }
}

nlohmann::json HandMadeReport(int layers) {
  nlohmann::json r = {
      {"model", "/models/<script>alert(\"x\")</script>&co"},
      {"output_dir", "/out/a'b"},
      {"architecture", "CareLlamaForCausalLM"},
      {"method", "care"},
      {"allocation", "auto"},
      {"allocation_chosen", "pooled-relative-floor"},
      {"budget", "kv_save=0.75"},
      {"damping", 0.01},
      {"sequential", false},
      {"num_layers", layers},
      {"kv_width_before", 64 * layers},
      {"kv_width_after", 16 * layers},
      {"kv_budget_width", 16 * layers},
      {"calibration",
       {{"data", "calib.txt"},
        {"samples", 256},
        {"seq_len", 32},
        {"seed", 0},
        {"range", {0, 1000}},
        {"heldout_range", {900, 1000}},
        {"heldout_tokens", 100},
        {"heldout_nll_original", 1.5},
        {"heldout_nll_converted", 2.0}}},
      {"original", {{"ppl", 6.85}, {"mean_nll", 1.92}, {"windows", 64}}},
      {"converted", {{"ppl", 13.1}, {"mean_nll", 2.57}, {"windows", 64}}},
      {"timings_s", {{"load", 0.1}, {"calibrate", 1.0}, {"evaluate", 0.5}}},
      {"flops", {{"calibrate", 2e9}}},
  };
  nlohmann::json ls = nlohmann::json::array();
  for (int l = 0; l < layers; ++l) {
    std::vector<double> sigma = {3, 2, 1, 0.5};
    const SpectrumReport s = SampleSpectrum(sigma.data(), 4);
    ls.push_back({{"layer", l},
                  {"rank_k", 1 + l % 3},
                  {"rank_v", 3},
                  {"heldout_error_k", 0.1 * l},
                  {"heldout_error_v", 0.2},
                  {"retained_energy_k", 0.9},
                  {"retained_energy_v", 0.95},
                  {"spectrum_k",
                   {{"size", s.size},
                    {"index", s.index},
                    {"sigma", s.sigma},
                    {"energy", s.energy}}},
                  {"spectrum_v",
                   {{"size", s.size},
                    {"index", s.index},
                    {"sigma", s.sigma},
                    {"energy", s.energy}}}});
  }
  r["layers"] = ls;
  r["candidates"] = {
      {{"name", "uniform"}, {"heldout_nll", 2.3}, {"chosen", false}},
      {{"name", "pooled-relative-floor"},
       {"heldout_nll", 2.0},
       {"chosen", true}}};
  return r;
}

TEST(ReportHtmlTest, OneBarPerLayerAndSeries) {
  for (int layers : {1, 5, 40}) {
    const std::string html = ReportHtml(HandMadeReport(layers));
    for (const char* chart : {"ranks", "errors", "energy"}) {
      const std::string svg = Chart(html, chart);
      ASSERT_FALSE(svg.empty()) << chart;
      EXPECT_EQ(Count(svg, "class=\"bar\" data-series=\"K\""), layers) << chart;
      EXPECT_EQ(Count(svg, "class=\"bar\" data-series=\"V\""), layers) << chart;
    }
    EXPECT_EQ(Count(Chart(html, "spectrum_k"), "class=\"line\""), layers);
    EXPECT_EQ(Count(Chart(html, "spectrum_v"), "<circle"), layers);
    EXPECT_EQ(Count(Chart(html, "candidates"), "class=\"bar\""), 2);
    EXPECT_EQ(Count(Chart(html, "timings"), "class=\"bar\""), 3);
  }
}

TEST(ReportHtmlTest, EscapesEveryStringAndLoadsNothing) {
  nlohmann::json r = HandMadeReport(2);
  r["candidates"][0]["name"] = "<img src=x onerror=alert(1)>";
  r["layers"][0]["note"] = "jitter <b>";
  r["another_layout"] = {{"steps",
                          {{{"step", "partial <rope>"}, {"ppl", 9.9}},
                           {{"step", "joint latent"}, {"ppl", 12.5}}}},
                         {"rope_dim", 8}};
  const std::string html = ReportHtml(r);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<b>"), std::string::npos);
  EXPECT_EQ(html.find("<rope>"), std::string::npos);
  EXPECT_NE(
      html.find("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;co"),
      std::string::npos);
  EXPECT_NE(html.find("/out/a&#39;b"), std::string::npos);
  // Self-contained: no element loads or links anything (the escaped
  // candidate name above holds "src=" as text, not as an attribute).
  EXPECT_FALSE(std::regex_search(
      html, std::regex(R"(<[a-zA-Z][^>]*\s(src|href|xlink:href)\s*=)")));
  for (const char* ref : {"<link", "@import", "url("}) {
    EXPECT_EQ(html.find(ref), std::string::npos) << ref;
  }
  // An unknown result (another output layout's per-step losses) is shown as
  // a chart and a table, not dropped.
  EXPECT_NE(html.find("<h2>another_layout</h2>"), std::string::npos);
  EXPECT_EQ(Count(Chart(html, "another_layout.steps"), "class=\"bar\""), 2);
  EXPECT_NE(html.find("partial &lt;rope&gt;"), std::string::npos);
}

// A DeepSeek-V3 layout report as MlaReportToJson writes it, with the
// shared per-layer entries (layer_reports.h).
nlohmann::json HandMadeMlaReport(int layers, int candidates) {
  nlohmann::json r = HandMadeReport(layers);
  r["layout"] = "deepseek_v3";
  r["architecture"] = "DeepseekV3ForCausalLM";
  r["candidates"] = nlohmann::json::array();
  nlohmann::json d = {{"rope_dim", 8},
                      {"rope_dim_auto", true},
                      {"freqfold", 1},
                      {"freqfold_auto", true},
                      {"kv_lora_rank", 24},
                      {"balance_kv", true},
                      {"nope_correction", true},
                      {"rope_theta", 10000.0},
                      {"kv_width_per_layer_before", 64},
                      {"kv_width_per_layer_after", 32},
                      {"heldout_nll_partial_rope", 1.75},
                      {"heldout_nll_original", 1.5},
                      {"scoring_seq_len", 256},
                      {"scoring_windows", 2},
                      {"o_proj_refit", true},
                      {"o_proj_refit_auto", true},
                      {"eval_ppl_partial_rope", 9.9}};
  nlohmann::json ls = nlohmann::json::array();
  for (int l = 0; l < layers; ++l) {
    r["layers"][l] = {{"layer", l},
                      {"rank_k", 24},
                      {"rank_v", 24},
                      {"heldout_error_k", 0.01 * l},
                      {"heldout_error_v", 0.2},
                      {"retained_energy_k", 0.9},
                      {"retained_energy_v", 0.9},
                      {"rope_energy", 0.6},
                      {"nope_score_error", 0.05}};
    ls.push_back({{"alpha_log2", 20},
                  {"rope_energy", 0.6},
                  {"balance_k", 1.5},
                  {"retained_energy", 0.9},
                  {"calib_error_k", 0.01},
                  {"calib_error_v", 0.1},
                  {"heldout_error_k", 0.01 * l},
                  {"heldout_error_v", 0.2},
                  {"norm_error_mean", 1e-9},
                  {"norm_error_max", 1e-8},
                  {"nope_dropped_error", 0.1},
                  {"nope_corrected_error", 0.05},
                  {"o_proj_refit", l % 2 == 0},
                  {"o_proj_error_before", 0.7},
                  {"o_proj_error_after", l % 2 == 0 ? 0.6 : 0.71},
                  {"note", ""}});
  }
  d["layers"] = ls;
  nlohmann::json cs = nlohmann::json::array();
  for (int i = 0; i < candidates; ++i) {
    cs.push_back({{"rope_dim", 8 >> (i / 3)},
                  {"freqfold", 1 << (i % 3)},
                  {"kv_lora_rank", 32 - (8 >> (i / 3))},
                  {"heldout_nll", 2.0 + 0.1 * i},
                  {"heldout_nll_partial_rope", 1.75 + 0.1 * i},
                  {"o_proj_refit", i % 2 == 1},
                  {"chosen", i == 0}});
  }
  d["candidates"] = cs;
  r["deepseek_v3"] = d;
  return r;
}

// The DeepSeek-V3 layout's page: its settings, the loss of each step, every
// rope/freqfold candidate and one bar per layer in each per-layer chart; no
// rank or spectrum charts (one joint latent at one rank, no allocation).
TEST(ReportHtmlTest, DeepseekV3LayoutSections) {
  for (int layers : {1, 5, 40}) {
    const std::string html = ReportHtml(HandMadeMlaReport(layers, 6));
    for (const char* id : {"deepseek_v3", "steps", "mla_candidates", "errors",
                           "energy", "rope_split", "o_proj_refit", "layers"}) {
      EXPECT_NE(html.find(absl::StrCat("<section id=\"", id, "\">")),
                std::string::npos)
          << id;
    }
    EXPECT_EQ(Count(Chart(html, "errors"), "data-series=\"K\""), layers);
    EXPECT_EQ(Count(Chart(html, "errors"), "data-series=\"V\""), layers);
    EXPECT_EQ(Count(Chart(html, "energy"), "class=\"bar\""), layers);
    EXPECT_EQ(Count(Chart(html, "rope_energy"), "class=\"bar\""), layers);
    EXPECT_EQ(Count(Chart(html, "nope_error"), "data-series=\"dropped\""),
              layers);
    EXPECT_EQ(Count(Chart(html, "nope_error"), "data-series=\"corrected\""),
              layers);
    EXPECT_EQ(
        Count(Chart(html, "o_proj_refit"), "data-series=\"source o_proj\""),
        layers);
    EXPECT_EQ(Count(Chart(html, "o_proj_refit"), "data-series=\"refit\""),
              layers);
    // original → partial RoPE only → converted, in NLL and perplexity.
    EXPECT_EQ(Count(Chart(html, "steps"), "class=\"bar\""), 3);
    EXPECT_EQ(Count(Chart(html, "steps_ppl"), "class=\"bar\""), 3);
    EXPECT_EQ(Count(Chart(html, "mla_candidates"), "class=\"bar\""), 6);
    EXPECT_EQ(Chart(html, "ranks"), "");
    EXPECT_EQ(Chart(html, "spectrum_k"), "");
    // The per-layer table: one row per layer (plus the header).
    const size_t table = html.find("<section id=\"layers\">");
    EXPECT_EQ(
        Count(html.substr(table, html.find("</table>", table) - table), "<tr>"),
        layers + 1);
  }
  const std::string html = ReportHtml(HandMadeMlaReport(2, 6));
  EXPECT_NE(html.find("8 (auto)"), std::string::npos);
  EXPECT_NE(html.find("64 → 32 (50.0 % saved)"), std::string::npos);
  EXPECT_NE(html.find("partial RoPE only"), std::string::npos);
  EXPECT_NE(html.find("<th>o_proj refit</th><td>on (auto)</td>"),
            std::string::npos);
  EXPECT_NE(html.find("rope 8 · freqfold 2 · o_proj refit"), std::string::npos);
  // Without the refit (older reports, other methods) no refit chart.
  nlohmann::json plain = HandMadeMlaReport(2, 1);
  for (auto& l : plain["deepseek_v3"]["layers"]) {
    l["o_proj_error_before"] = 0;
    l["o_proj_error_after"] = 0;
  }
  EXPECT_EQ(ReportHtml(plain).find("<section id=\"o_proj_refit\">"),
            std::string::npos);
  // The deepseek_v3 object is rendered by its sections, not as raw fields.
  EXPECT_EQ(html.find("<h2>deepseek_v3</h2>"), std::string::npos);
  EXPECT_EQ(html.find("kv_width_per_layer_before"), std::string::npos);
}

// Healing (issue 24): the per-layer attention-output errors before and
// after, one bar pair and one table row per layer, and the summary.
TEST(ReportHtmlTest, DeepseekV3HealingSection) {
  nlohmann::json r = HandMadeMlaReport(3, 1);
  nlohmann::json layers = nlohmann::json::array();
  for (int l = 0; l < 3; ++l) {
    layers.push_back({{"heldout_error_before", 0.4 + l},
                      {"heldout_error_after", l == 2 ? 2.4 : 0.1 + l},
                      {"train_error_before", 0.5},
                      {"steps", 200},
                      {"best_step", l == 2 ? 0 : 180},
                      {"accepted", l != 2}});
  }
  r["deepseek_v3"]["heal"] = {{"inputs", "original"},
                              {"data", "/d/calib.u16"},
                              {"train_tokens", 176384},
                              {"heldout_tokens", 16384},
                              {"seq_len", 256},
                              {"max_steps", 200},
                              {"batch_windows", 8},
                              {"learning_rate", 0.002},
                              {"seconds", 74.5},
                              {"heldout_nll_before", 2.53},
                              {"heldout_nll_after", 2.01},
                              {"layers", layers}};
  const std::string html = ReportHtml(r);
  const size_t at = html.find("<section id=\"healing\">");
  ASSERT_NE(at, std::string::npos);
  const std::string section = html.substr(at, html.find("</section>", at) - at);
  EXPECT_EQ(Count(Chart(html, "heal_errors"), "data-series=\"before\""), 3);
  EXPECT_EQ(Count(Chart(html, "heal_errors"), "data-series=\"after\""), 3);
  EXPECT_NE(section.find("176384"), std::string::npos);
  EXPECT_NE(section.find("2.53 → 2.01"), std::string::npos);
  EXPECT_EQ(Count(section, "<td>healed</td>"), 2);
  EXPECT_EQ(Count(section, "<td>one-shot</td>"), 1);
  // Rendered by its section, not again as raw fields.
  EXPECT_EQ(html.find("deepseek_v3.heal"), std::string::npos);
}

// Qwen3: the q/k norm fold's own loss is a step of its own (perplexity
// only: it is measured on the evaluation windows), between the original and
// partial RoPE.
TEST(ReportHtmlTest, DeepseekV3Qwen3FoldStep) {
  nlohmann::json r = HandMadeMlaReport(2, 1);
  r["deepseek_v3"]["eval_ppl_qk_norm_fold"] = 14.62;
  const std::string html = ReportHtml(r);
  EXPECT_EQ(Count(Chart(html, "steps"), "class=\"bar\""), 3);
  EXPECT_EQ(Count(Chart(html, "steps_ppl"), "class=\"bar\""), 4);
  const size_t fold = html.find("q/k norm fold only");
  ASSERT_NE(fold, std::string::npos);
  EXPECT_LT(html.find("<td>original</td>"),
            html.find("<td>q/k norm fold only"));
  EXPECT_LT(html.find("<td>q/k norm fold only"),
            html.find("<td>partial RoPE only</td>"));
  EXPECT_NE(html.find("14.62"), std::string::npos);
  // Shown in its step, not again as a raw field.
  EXPECT_EQ(html.find("eval_ppl_qk_norm_fold"), std::string::npos);
}

// A field of the deepseek_v3 object no section knows (a later stage's
// results) is shown, not dropped; without evaluation data there is no
// perplexity chart, and without the NoPE correction no NoPE error chart.
TEST(ReportHtmlTest, DeepseekV3UnknownFieldsAndMissingEvaluation) {
  nlohmann::json r = HandMadeMlaReport(3, 1);
  r.erase("original");
  r.erase("converted");
  r["deepseek_v3"]["eval_ppl_partial_rope"] = nullptr;
  r["deepseek_v3"]["nope_correction"] = false;
  r["deepseek_v3"]["rope_dim_auto"] = false;
  r["deepseek_v3"]["freqfold_auto"] = false;
  r["deepseek_v3"]["o_proj_refit_auto"] = false;
  r["deepseek_v3"]["healing"] = {
      {"steps", 100},
      {"history",
       {{{"step", "<heal>"}, {"nll", 1.9}}, {{"step", "b"}, {"nll", 1.8}}}}};
  const std::string html = ReportHtml(r);
  EXPECT_EQ(Count(Chart(html, "steps"), "class=\"bar\""), 3);
  EXPECT_EQ(Chart(html, "steps_ppl"), "");
  EXPECT_EQ(Chart(html, "nope_error"), "");
  EXPECT_EQ(Count(Chart(html, "mla_candidates"), "class=\"bar\""), 1);
  EXPECT_NE(html.find("were given: one candidate"), std::string::npos);
  EXPECT_NE(html.find("<h3>healing.history</h3>"), std::string::npos);
  EXPECT_EQ(Count(Chart(html, "deepseek_v3.healing.history"), "class=\"bar\""),
            2);
  EXPECT_NE(html.find("&lt;heal&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<heal>"), std::string::npos);
}

// The summary table carries task accuracy and rolling perplexity before →
// after; their full records stay in the generic tables below.
TEST(ReportHtmlTest, SummaryHasTasksAndRollingPerplexity) {
  nlohmann::json r = HandMadeReport(2);
  r["tasks"] = {{{"name", "arc<e>"},
                 {"items", 32},
                 {"original", {{"acc", 0.5}, {"acc_norm", 0.625}}},
                 {"converted", {{"acc", 0.4375}, {"acc_norm", 0.5}}}}};
  r["rolling"] = {{"stride", 256},
                  {"original",
                   {{"token_perplexity", 7.5},
                    {"word_perplexity", 20.0},
                    {"byte_perplexity", 1.5}}},
                  {"converted",
                   {{"token_perplexity", 9.0},
                    {"word_perplexity", 30.0},
                    {"byte_perplexity", 1.625}}}};
  const std::string html = ReportHtml(r);
  const size_t summary = html.find("<section id=\"summary\">");
  const std::string table =
      html.substr(summary, html.find("</section>", summary) - summary);
  EXPECT_NE(table.find("<th>task arc&lt;e&gt; (32 items)</th><td>acc 0.5 → "
                       "0.4375, acc_norm 0.625 → 0.5</td>"),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("token 7.5 → 9, word 20 → 30, byte 1.5 → 1.625"),
            std::string::npos);
  // The generic sections still show the full records, nested objects as
  // columns of their own.
  EXPECT_NE(html.find("<h2>tasks</h2>"), std::string::npos);
  EXPECT_NE(html.find("<th>original.acc_norm</th>"), std::string::npos);
  EXPECT_EQ(html.find("{&quot;acc&quot;"), std::string::npos);
  EXPECT_NE(html.find("<h2>rolling</h2>"), std::string::npos);
}

TEST(ReportHtmlTest, MissingFieldsRenderWithoutCharts) {
  const std::string html = ReportHtml(nlohmann::json::object());
  EXPECT_NE(html.find("CARE-MLA conversion report"), std::string::npos);
  EXPECT_EQ(html.find("class=\"bar\""), std::string::npos);
  EXPECT_NE(html.find("</html>"), std::string::npos);
  // Mistyped fields are treated as absent.
  const std::string odd =
      ReportHtml({{"layers", "not an array"}, {"original", 3}});
  EXPECT_NE(odd.find("</html>"), std::string::npos);
}

TEST(ReportHtmlTest, EscapeAndNumbers) {
  EXPECT_EQ(svg::Escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
  EXPECT_EQ(svg::Num(0.000123456), "0.0001235");
  EXPECT_EQ(svg::Num(6.85), "6.85");
  EXPECT_EQ(svg::Num(1.0 / 0.0), "inf");
  EXPECT_EQ(svg::Num(16320), "16320");
}

// A real conversion of the fixture model writes care_report.html beside
// care_report.json, rendered from that JSON, with the spectra in both.
TEST(ReportHtmlFixtureTest, ConversionWritesThePage) {
  CARE_REQUIRE_FIXTURES();
  const std::string out =
      ::care::testing::MakeTempDir("report_html") + "/stories-mla";
  ConvertOptions o =
      testing::SmallOptions(::care::testing::FixturePath("stories260K-hf"), out,
                            Budget::KvSave(0.75), Method::kCare);
  o.allocation = AllocationStrategy::kAuto;
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string html = ReadFile(out + "/care_report.html");
  const nlohmann::json json =
      nlohmann::json::parse(ReadFile(out + "/care_report.json"));
  EXPECT_EQ(html, ReportHtml(json));
  ASSERT_EQ(json["layers"].size(), 5u);
  for (const auto& layer : json["layers"]) {
    // stories260K: 4 KV heads × head_dim 8 = 32 singular values per K/V.
    EXPECT_EQ(layer["spectrum_k"]["size"], 32);
    EXPECT_EQ(layer["spectrum_v"]["index"].size(), 32u);
    EXPECT_NEAR(layer["spectrum_k"]["energy"].back().get<double>(), 1.0, 1e-12);
  }
  EXPECT_EQ(Count(Chart(html, "ranks"), "class=\"bar\""), 10);
  EXPECT_EQ(Count(Chart(html, "candidates"), "class=\"bar\""),
            static_cast<int>(r->candidates.size()));
  EXPECT_GT(r->candidates.size(), 1u);
}

// The DeepSeek-V3 layout writes the same page beside its checkpoint, with
// one entry per layer in the shared layers[] (layer_reports.h).
TEST(ReportHtmlFixtureTest, DeepseekV3ConversionWritesThePage) {
  CARE_REQUIRE_FIXTURES();
  const std::string out =
      ::care::testing::MakeTempDir("report_html_mla") + "/stories-dsv3";
  ConvertOptions o =
      testing::SmallOptions(::care::testing::FixturePath("stories260K-hf"), out,
                            Budget::KvSave(0.5), Method::kCare);
  o.output_layout = OutputLayout::kDeepseekV3;
  o.mla.rope_dim = 8;
  o.mla.freqfold = 1;  // and the o_proj refit auto (the default): 2 fits
  absl::StatusOr<ConversionReport> r = ConvertModel(o);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_TRUE(r->deepseek_v3);
  const std::string html = ReadFile(out + "/care_report.html");
  const nlohmann::json json =
      nlohmann::json::parse(ReadFile(out + "/care_report.json"));
  EXPECT_EQ(html, ReportHtml(json));
  // stories260K: 5 layers; 50 % of 2·g·d_h = 64 leaves kv_lora_rank 24.
  ASSERT_EQ(json["layers"].size(), 5u);
  ASSERT_EQ(r->deepseek_v3->layers.size(), 5u);
  for (size_t l = 0; l < 5; ++l) {
    const nlohmann::json& layer = json["layers"][l];
    const MlaLayerReport& m = r->deepseek_v3->layers[l];
    EXPECT_EQ(layer["layer"], l);
    EXPECT_EQ(layer["rank_k"], 24);
    EXPECT_EQ(layer["rank_v"], 24);
    EXPECT_EQ(layer["heldout_error_k"].get<double>(), m.heldout_error_k);
    EXPECT_EQ(layer["heldout_error_v"].get<double>(), m.heldout_error_v);
    EXPECT_EQ(layer["retained_energy_v"].get<double>(), m.retained_energy);
    EXPECT_EQ(layer["rope_energy"].get<double>(), m.rope_energy);
    EXPECT_EQ(layer["nope_score_error"].get<double>(), m.nope_corrected_error);
    // Measured, not defaults: a lossy joint latent on held-out tokens.
    EXPECT_GT(m.heldout_error_v, 0);
    EXPECT_GT(m.retained_energy, 0);
    EXPECT_LT(m.retained_energy, 1);
  }
  EXPECT_EQ(Count(Chart(html, "errors"), "class=\"bar\""), 10);
  EXPECT_EQ(Count(Chart(html, "rope_energy"), "class=\"bar\""), 5);
  EXPECT_EQ(Count(Chart(html, "steps"), "class=\"bar\""), 3);
  EXPECT_EQ(Count(Chart(html, "mla_candidates"), "class=\"bar\""), 2);
  EXPECT_EQ(r->deepseek_v3->candidates.size(), 2u);
  // The refit's per-layer chart when the written candidate has it.
  EXPECT_EQ(html.find("<section id=\"o_proj_refit\">") != std::string::npos,
            r->deepseek_v3->o_proj_refit);
}

}  // namespace
}  // namespace care::convert
