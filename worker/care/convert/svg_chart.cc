#include "care/convert/svg_chart.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace care::convert::svg {
namespace {

constexpr double kWidth = 760;
constexpr double kLeft = 60, kRight = 16, kTop = 30, kBottom = 40;

std::string F(double v) { return absl::StrFormat("%.1f", v); }

// Tick positions 0, step, 2·step, ... covering [0, top] with a 1-2-5 step.
std::vector<double> LinearTicks(double top) {
  if (!(top > 0) || !std::isfinite(top)) top = 1;
  const double raw = top / 4;
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * magnitude;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (int i = 0; i <= 12; ++i) {
    ticks.push_back(i * step);
    if (ticks.back() >= top * (1 - 1e-9)) break;
  }
  return ticks;
}

std::string SvgOpen(const std::string& id, double height,
                    const std::string& label) {
  return absl::StrCat("<svg class=\"chart\" data-chart=\"", Escape(id),
                      "\" xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 ",
                      F(kWidth), " ", F(height),
                      "\" role=\"img\" aria-label=\"", Escape(label), "\">\n");
}

// Legend entries right-aligned on the top line.
std::string Legend(const std::vector<std::pair<std::string, std::string>>& e) {
  std::string s;
  double x = kWidth - kRight;
  for (auto it = e.rbegin(); it != e.rend(); ++it) {
    const double text_w = 7.0 * it->first.size() + 6;
    x -= text_w;
    absl::StrAppend(&s, "<text class=\"legend\" x=\"", F(x), "\" y=\"16\">",
                    Escape(it->first), "</text>");
    x -= 14;
    absl::StrAppend(&s, "<rect x=\"", F(x), "\" y=\"7\" width=\"10\" ",
                    "height=\"10\" rx=\"2\" fill=\"", Escape(it->second),
                    "\"/>");
    x -= 12;
  }
  return s + "\n";
}

}  // namespace

std::string Escape(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Num(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "n/a" : "inf";
  // Counts (token ranges, widths) in full, not as 1.632e+04.
  if (value == std::round(value) && std::fabs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  return absl::StrFormat("%.4g", value);
}

std::string PaletteColor(int i, int n) {
  static const char* kTab10[] = {"#4c72b0", "#dd8452", "#55a868", "#c44e52",
                                 "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                                 "#ccb974", "#64b5cd"};
  if (n <= 10) return kTab10[((i % 10) + 10) % 10];
  // Hue around the wheel, lightness alternating so neighbours differ.
  return absl::StrFormat("hsl(%d, 62%%, %d%%)", (i * 360 / n) % 360,
                         i % 2 == 0 ? 42 : 55);
}

std::string RenderBarChart(const BarChart& c) {
  const double height = c.height;
  const double plot_w = kWidth - kLeft - kRight;
  const double plot_h = height - kTop - kBottom;
  double top = 0;
  for (const Series& s : c.series) {
    for (double v : s.values) {
      if (std::isfinite(v)) top = std::max(top, v);
    }
  }
  for (const Reference& r : c.references) top = std::max(top, r.value);
  if (c.y_max) top = *c.y_max;
  const std::vector<double> ticks = LinearTicks(top);
  top = ticks.back() > 0 ? ticks.back() : 1;
  auto y_of = [&](double v) {
    return kTop + plot_h * (1 - std::clamp(v / top, 0.0, 1.0));
  };

  std::string s = SvgOpen(c.id, height, c.y_label);
  std::vector<std::pair<std::string, std::string>> legend;
  for (const Series& x : c.series) legend.emplace_back(x.name, x.color);
  if (c.series.size() > 1) s += Legend(legend);
  // Grid and y axis.
  for (double t : ticks) {
    absl::StrAppend(&s, "<line class=\"grid\" x1=\"", F(kLeft), "\" x2=\"",
                    F(kWidth - kRight), "\" y1=\"", F(y_of(t)), "\" y2=\"",
                    F(y_of(t)), "\"/><text class=\"tick\" x=\"", F(kLeft - 6),
                    "\" y=\"", F(y_of(t) + 4), "\" text-anchor=\"end\">",
                    Num(t), "</text>\n");
  }
  absl::StrAppend(&s, "<text class=\"axis-label\" x=\"14\" y=\"",
                  F(kTop + plot_h / 2), "\" transform=\"rotate(-90 14 ",
                  F(kTop + plot_h / 2), ")\" text-anchor=\"middle\">",
                  Escape(c.y_label), "</text>\n");
  const size_t n = c.categories.size();
  const size_t k = std::max<size_t>(c.series.size(), 1);
  const double group_w = n > 0 ? plot_w / n : plot_w;
  const double bar_w = std::max(group_w * 0.78 / k, 0.6);
  // At most ~30 x labels: every step-th category.
  const size_t label_step = std::max<size_t>(1, (n + 29) / 30);
  for (size_t i = 0; i < n; ++i) {
    const double gx = kLeft + group_w * i + group_w * 0.11;
    for (size_t j = 0; j < c.series.size(); ++j) {
      const Series& x = c.series[j];
      const double v = i < x.values.size() ? x.values[i] : 0;
      const double y = y_of(std::isfinite(v) ? std::max(v, 0.0) : 0);
      absl::StrAppend(&s, "<rect class=\"bar\" data-series=\"", Escape(x.name),
                      "\" data-index=\"", i, "\" x=\"", F(gx + bar_w * j),
                      "\" y=\"", F(y), "\" width=\"",
                      F(std::max(bar_w - 1, 0.5)), "\" height=\"",
                      F(kTop + plot_h - y), "\" fill=\"", Escape(x.color),
                      "\"><title>", Escape(c.categories[i]), " · ",
                      Escape(x.name), ": ", Num(v), "</title></rect>");
    }
    if (i % label_step == 0) {
      absl::StrAppend(&s, "<text class=\"tick\" x=\"",
                      F(kLeft + group_w * (i + 0.5)), "\" y=\"",
                      F(kTop + plot_h + 16), "\" text-anchor=\"middle\">",
                      Escape(c.categories[i]), "</text>");
    }
    s += "\n";
  }
  for (const Reference& r : c.references) {
    const double y = y_of(r.value);
    absl::StrAppend(&s, "<line class=\"ref\" x1=\"", F(kLeft), "\" x2=\"",
                    F(kWidth - kRight), "\" y1=\"", F(y), "\" y2=\"", F(y),
                    "\"/><text class=\"ref-label\" x=\"", F(kWidth - kRight),
                    "\" y=\"", F(y - 4), "\" text-anchor=\"end\">",
                    Escape(r.label), "</text>\n");
  }
  if (!c.x_label.empty()) {
    absl::StrAppend(&s, "<text class=\"axis-label\" x=\"",
                    F(kLeft + plot_w / 2), "\" y=\"", F(height - 4),
                    "\" text-anchor=\"middle\">", Escape(c.x_label),
                    "</text>\n");
  }
  absl::StrAppend(&s, "<line class=\"axis\" x1=\"", F(kLeft), "\" x2=\"",
                  F(kWidth - kRight), "\" y1=\"", F(kTop + plot_h), "\" y2=\"",
                  F(kTop + plot_h), "\"/>\n</svg>\n");
  return s;
}

std::string RenderHBarChart(const HBarChart& c) {
  constexpr double kRow = 24, kLabelW = 190, kValueW = 200;
  const size_t n = c.labels.size();
  const double height = kRow * n + 30;
  const double x0 = kLabelW, x1 = kWidth - kValueW;
  double lo = c.x_min.value_or(0), hi = lo;
  for (double v : c.values) {
    if (std::isfinite(v)) hi = std::max(hi, v);
  }
  for (const Reference& r : c.references) hi = std::max(hi, r.value);
  if (hi <= lo) hi = lo + 1;
  auto x_of = [&](double v) {
    return x0 + (x1 - x0) * std::clamp((v - lo) / (hi - lo), 0.0, 1.0);
  };
  std::string s = SvgOpen(c.id, height, c.id);
  for (size_t i = 0; i < n; ++i) {
    const double y = 6 + kRow * i;
    const double v = i < c.values.size() ? c.values[i] : 0;
    const double w = std::max(x_of(std::isfinite(v) ? v : lo) - x0, 1.0);
    const bool hl = static_cast<int>(i) == c.highlight;
    absl::StrAppend(
        &s, "<text class=\"hlabel", hl ? " strong" : "", "\" x=\"", F(x0 - 8),
        "\" y=\"", F(y + 15), "\" text-anchor=\"end\">", Escape(c.labels[i]),
        "</text><rect class=\"bar\" data-series=\"", Escape(c.id),
        "\" data-index=\"", i, "\" x=\"", F(x0), "\" y=\"", F(y + 2),
        "\" width=\"", F(w), "\" height=\"", F(kRow - 6), "\" fill=\"",
        hl ? "#d1495b" : Escape(c.color), "\"><title>", Escape(c.labels[i]),
        ": ", Num(v), "</title></rect><text class=\"hvalue\" x=\"",
        F(x0 + w + 6), "\" y=\"", F(y + 15), "\">",
        Escape(i < c.value_text.size() ? c.value_text[i] : Num(v)),
        "</text>\n");
  }
  for (const Reference& r : c.references) {
    const double x = x_of(r.value);
    absl::StrAppend(&s, "<line class=\"ref\" x1=\"", F(x), "\" x2=\"", F(x),
                    "\" y1=\"2\" y2=\"", F(height - 22),
                    "\"/><text class=\"ref-label\" x=\"", F(x + 4), "\" y=\"",
                    F(height - 8), "\">", Escape(r.label), "</text>\n");
  }
  if (c.x_min) {  // where the bars start, left of the axis
    absl::StrAppend(&s, "<text class=\"tick\" x=\"", F(x0 - 4), "\" y=\"",
                    F(height - 8), "\" text-anchor=\"end\">axis from ", Num(lo),
                    "</text>\n");
  }
  return s + "</svg>\n";
}

std::string RenderLineChart(const LineChart& c) {
  const double height = c.height;
  const double plot_w = kWidth - kLeft - kRight - 70;  // legend on the right
  const double plot_h = height - kTop - kBottom;
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const Line& l : c.lines) {
    for (size_t i = 0; i < l.x.size() && i < l.y.size(); ++i) {
      if (c.log_y && !(l.y[i] > 0)) continue;
      x_lo = std::min(x_lo, l.x[i]);
      x_hi = std::max(x_hi, l.x[i]);
      y_lo = std::min(y_lo, l.y[i]);
      y_hi = std::max(y_hi, l.y[i]);
    }
  }
  if (!std::isfinite(x_lo)) {  // nothing to draw: an empty frame
    x_lo = 0;
    x_hi = 1;
    y_lo = 1;
    y_hi = 1;
  }
  if (x_hi <= x_lo) x_hi = x_lo + 1;
  std::vector<double> ticks;
  if (c.log_y) {
    const int e_lo = static_cast<int>(std::floor(std::log10(y_lo)));
    int e_hi = static_cast<int>(std::ceil(std::log10(y_hi)));
    if (e_hi <= e_lo) e_hi = e_lo + 1;
    // At most 8 decades labelled.
    const int step = std::max(1, (e_hi - e_lo + 7) / 8);
    for (int e = e_lo; e <= e_hi; e += step) ticks.push_back(std::pow(10, e));
    y_lo = std::pow(10, e_lo);
    y_hi = ticks.back();
  } else {
    ticks = LinearTicks(y_hi);
    y_lo = 0;
    y_hi = ticks.back() > 0 ? ticks.back() : 1;
  }
  auto x_of = [&](double x) {
    return kLeft + plot_w * (x - x_lo) / (x_hi - x_lo);
  };
  auto y_of = [&](double y) {
    const double f = c.log_y ? (std::log10(y) - std::log10(y_lo)) /
                                   (std::log10(y_hi) - std::log10(y_lo))
                             : (y - y_lo) / (y_hi - y_lo);
    return kTop + plot_h * (1 - std::clamp(f, 0.0, 1.0));
  };
  std::string s = SvgOpen(c.id, height, c.y_label);
  for (double t : ticks) {
    absl::StrAppend(&s, "<line class=\"grid\" x1=\"", F(kLeft), "\" x2=\"",
                    F(kLeft + plot_w), "\" y1=\"", F(y_of(t)), "\" y2=\"",
                    F(y_of(t)), "\"/><text class=\"tick\" x=\"", F(kLeft - 6),
                    "\" y=\"", F(y_of(t) + 4), "\" text-anchor=\"end\">",
                    Num(t), "</text>\n");
  }
  for (double t : LinearTicks(x_hi)) {
    if (t < x_lo || t > x_hi) continue;
    absl::StrAppend(&s, "<text class=\"tick\" x=\"", F(x_of(t)), "\" y=\"",
                    F(kTop + plot_h + 16), "\" text-anchor=\"middle\">", Num(t),
                    "</text>");
  }
  absl::StrAppend(
      &s, "\n<text class=\"axis-label\" x=\"", F(kLeft + plot_w / 2), "\" y=\"",
      F(height - 6), "\" text-anchor=\"middle\">", Escape(c.x_label),
      "</text><text class=\"axis-label\" x=\"14\" y=\"", F(kTop + plot_h / 2),
      "\" transform=\"rotate(-90 14 ", F(kTop + plot_h / 2),
      ")\" text-anchor=\"middle\">", Escape(c.y_label), "</text>\n");
  const size_t legend_rows =
      std::max<size_t>(1, static_cast<size_t>(plot_h / 14));
  const size_t legend_step = (c.lines.size() + legend_rows - 1) / legend_rows;
  for (size_t li = 0; li < c.lines.size(); ++li) {
    const Line& l = c.lines[li];
    std::string d;
    for (size_t i = 0; i < l.x.size() && i < l.y.size(); ++i) {
      if (c.log_y && !(l.y[i] > 0)) continue;
      absl::StrAppend(&d, d.empty() ? "M" : " L", F(x_of(l.x[i])), " ",
                      F(y_of(l.y[i])));
    }
    absl::StrAppend(&s, "<path class=\"line\" data-series=\"", Escape(l.name),
                    "\" d=\"", d, "\" stroke=\"", Escape(l.color), "\"><title>",
                    Escape(l.name), "</title></path>");
    if (l.marker_x) {
      // y on the line at marker_x: linear interpolation between samples.
      std::optional<double> y;
      for (size_t i = 0; i + 1 < l.x.size() && i + 1 < l.y.size(); ++i) {
        if (l.x[i] <= *l.marker_x && *l.marker_x <= l.x[i + 1]) {
          const double t = l.x[i + 1] > l.x[i]
                               ? (*l.marker_x - l.x[i]) / (l.x[i + 1] - l.x[i])
                               : 0;
          y = c.log_y ? std::exp((1 - t) * std::log(l.y[i]) +
                                 t * std::log(l.y[i + 1]))
                      : (1 - t) * l.y[i] + t * l.y[i + 1];
          break;
        }
      }
      if (y && (!c.log_y || *y > 0)) {
        absl::StrAppend(&s, "<circle class=\"marker\" cx=\"",
                        F(x_of(*l.marker_x)), "\" cy=\"", F(y_of(*y)),
                        "\" r=\"3.5\" fill=\"", Escape(l.color), "\"><title>",
                        Escape(l.name), ": kept ", Num(*l.marker_x),
                        "</title></circle>");
      }
    }
    if (li % legend_step == 0) {
      const size_t row = li / legend_step;  // every legend_step-th line
      const double ly = kTop + 14.0 * static_cast<double>(row) + 4;
      const double lx = kLeft + plot_w + 12;
      absl::StrAppend(
          &s, "<line x1=\"", F(lx), "\" x2=\"", F(lx + 14), "\" y1=\"",
          F(ly - 4), "\" y2=\"", F(ly - 4), "\" stroke=\"", Escape(l.color),
          "\" stroke-width=\"2.5\"/><text class=\"legend\" x=\"", F(lx + 18),
          "\" y=\"", F(ly), "\">", Escape(l.name), "</text>");
    }
    s += "\n";
  }
  absl::StrAppend(&s, "<line class=\"axis\" x1=\"", F(kLeft), "\" x2=\"",
                  F(kLeft + plot_w), "\" y1=\"", F(kTop + plot_h), "\" y2=\"",
                  F(kTop + plot_h), "\"/>\n</svg>\n");
  return s;
}

}  // namespace care::convert::svg
