// Inline SVG charts for the HTML report (report_html.h): grouped vertical
// bars, horizontal bars and line charts, drawn as plain markup with no
// script, so the report is one self-contained, printable file. Every text
// that reaches the markup is escaped here.
//
// Each chart is <svg class="chart" data-chart=ID>; each bar is
// <rect class="bar" data-series=S data-index=I> with a <title> tooltip, each
// line <path class="line">, so tests (and readers of the DOM) can count them.
#ifndef CARE_CONVERT_SVG_CHART_H_
#define CARE_CONVERT_SVG_CHART_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace care::convert::svg {

// &, <, >, " and ' as entities: safe in element text and quoted attributes.
std::string Escape(absl::string_view text);

// Compact number: 4 significant digits, no trailing zeros ("0.0123",
// "1.5e+06").
std::string Num(double value);

struct Series {
  std::string name;
  std::string color;  // CSS color
  std::vector<double> values;
};

// A horizontal line across the plot at `value`, labelled.
struct Reference {
  double value = 0;
  std::string label;
};

struct BarChart {
  std::string id;
  std::string x_label, y_label;
  std::vector<std::string> categories;  // x axis, one group per category
  std::vector<Series> series;           // one bar per series per category
  std::vector<Reference> references;
  std::optional<double> y_max;  // default: the largest value or reference
  int height = 240;
};
std::string RenderBarChart(const BarChart& chart);

// One bar per row, value to the right of it; `highlight` is drawn in the
// accent color (e.g. the chosen candidate).
struct HBarChart {
  std::string id;
  std::vector<std::string> labels;
  std::vector<double> values;
  std::vector<std::string> value_text;  // shown right of each bar
  int highlight = -1;
  std::string color = "#4c72b0";
  std::vector<Reference> references;
  // Bars start at this value instead of 0 (NLLs: differences matter).
  std::optional<double> x_min;
};
std::string RenderHBarChart(const HBarChart& chart);

struct Line {
  std::string name;
  std::string color;
  std::vector<double> x, y;  // y > 0 when log_y
  // A dot on the line at this x (e.g. the rank the allocation kept).
  std::optional<double> marker_x;
};
struct LineChart {
  std::string id;
  std::string x_label, y_label;
  std::vector<Line> lines;
  bool log_y = false;
  int height = 260;
};
std::string RenderLineChart(const LineChart& chart);

// The i-th of n well-separated colors (layers in line charts).
std::string PaletteColor(int i, int n);

}  // namespace care::convert::svg

#endif  // CARE_CONVERT_SVG_CHART_H_
