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
  r["deepseek_v3"] = {{"steps",
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
  EXPECT_NE(html.find("<h2>deepseek_v3</h2>"), std::string::npos);
  EXPECT_EQ(Count(Chart(html, "deepseek_v3.steps"), "class=\"bar\""), 2);
  EXPECT_NE(html.find("partial &lt;rope&gt;"), std::string::npos);
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

}  // namespace
}  // namespace care::convert
