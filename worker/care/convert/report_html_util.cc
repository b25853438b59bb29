#include "care/convert/report_html_util.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "care/convert/svg_chart.h"

namespace care::convert::html {
namespace {

using svg::Escape;
using svg::Num;

// Rows of a generic table beyond which the rest is summarised.
constexpr size_t kMaxTableRows = 200;
// Levels of nested objects shown as tables of their own.
constexpr int kMaxNesting = 3;

bool IsObjectArray(const json& v) {
  return v.is_array() && !v.empty() &&
         std::all_of(v.begin(), v.end(),
                     [](const json& x) { return x.is_object(); });
}

}  // namespace

std::optional<double> NumAt(const json& j, const char* key) {
  if (!j.is_object()) return std::nullopt;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

std::string StrAt(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_boolean()) return it->get<bool>() ? "yes" : "no";
  if (it->is_number()) return Num(it->get<double>());
  return "";
}

const json& At(const json& j, const char* key) {
  static const json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

std::string Opt(const std::optional<double>& v) {
  return v ? Num(*v) : std::string("—");
}

// A JSON value of any type as short text (tables of unknown fields).
std::string ScalarText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_number_integer()) return absl::StrCat(v.get<int64_t>());
  if (v.is_number()) return Num(v.get<double>());
  if (v.is_null()) return "—";
  std::string s = v.dump();
  if (s.size() > 160) s = s.substr(0, 157) + "...";
  return s;
}

// A [begin, end] pair of token positions as the half-open "[begin, end)".
std::string RangeText(const json& v) {
  if (v.is_array() && v.size() == 2 && v[0].is_number() && v[1].is_number()) {
    return absl::StrCat("[", Num(v[0].get<double>()), ", ",
                        Num(v[1].get<double>()), ")");
  }
  return ScalarText(v);
}

// Lists of numbers as "4 4 6 8" (rank lists).
std::string IntList(const json& v) {
  if (!v.is_array()) return "";
  std::vector<std::string> parts;
  for (const json& x : v) parts.push_back(ScalarText(x));
  return absl::StrJoin(parts, " ");
}

void Row(std::string& s, const std::string& key, const std::string& value) {
  absl::StrAppend(&s, "<tr><th>", Escape(key), "</th><td>", value,
                  "</td></tr>\n");
}

std::string Code(const std::string& text) {
  return absl::StrCat("<code>", Escape(text), "</code>");
}

std::string Card(const std::string& key, const std::string& value,
                 const std::string& detail) {
  return absl::StrCat("<div class=\"card\"><div class=\"k\">", Escape(key),
                      "</div><div class=\"v\">", Escape(value),
                      "</div><div class=\"d\">", Escape(detail),
                      "</div></div>\n");
}

std::string Percent(double fraction) {
  return absl::StrFormat("%.1f %%", 100 * fraction);
}

std::vector<double> LayerValues(const json& layers, const char* key) {
  std::vector<double> out;
  for (const json& l : layers) out.push_back(NumAt(l, key).value_or(0));
  return out;
}

std::vector<std::string> LayerNames(const json& layers) {
  std::vector<std::string> out;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto idx = NumAt(layers[i], "layer");
    out.push_back(absl::StrCat(idx ? static_cast<int64_t>(*idx)
                                   : static_cast<int64_t>(i)));
  }
  return out;
}

std::string ObjectArray(const std::string& id, const json& records) {
  // Object-valued fields become columns of their own ("original.acc"): a
  // JSON dump in a cell is unreadable.
  json rows = json::array();
  for (const json& record : records) {
    json row = json::object();
    for (const auto& [k, v] : record.items()) {
      if (v.is_object() && !v.empty()) {
        for (const auto& [k2, v2] : v.items()) row[k + "." + k2] = v2;
      } else {
        row[k] = v;
      }
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> cols;
  for (const json& row : rows) {
    for (const auto& [k, v] : row.items()) {
      if (std::find(cols.begin(), cols.end(), k) == cols.end()) {
        cols.push_back(k);
      }
    }
  }
  std::string s;
  const std::string label_col = [&]() -> std::string {
    for (const char* k : {"name", "step", "task", "candidate", "stage"}) {
      if (std::find(cols.begin(), cols.end(), k) != cols.end()) return k;
    }
    return "";
  }();
  std::string value_col;
  for (const std::string& c : cols) {
    for (const char* k : {"ppl", "nll", "loss", "accuracy", "acc"}) {
      if (value_col.empty() && c.find(k) != std::string::npos &&
          rows[0].contains(c) && rows[0][c].is_number()) {
        value_col = c;
      }
    }
  }
  if (!label_col.empty() && !value_col.empty() && rows.size() <= 60) {
    svg::HBarChart chart;
    chart.id = id;
    for (const json& row : rows) {
      chart.labels.push_back(StrAt(row, label_col.c_str()));
      const double v = NumAt(row, value_col.c_str()).value_or(NAN);
      chart.values.push_back(v);
      chart.value_text.push_back(absl::StrCat(value_col, " ", Num(v)));
    }
    s += svg::RenderHBarChart(chart);
  }
  s += "<table><tr>";
  for (const std::string& c : cols)
    absl::StrAppend(&s, "<th>", Escape(c), "</th>");
  s += "</tr>\n";
  for (size_t i = 0; i < rows.size() && i < kMaxTableRows; ++i) {
    s += "<tr>";
    for (const std::string& c : cols) {
      const json& v = At(rows[i], c.c_str());
      absl::StrAppend(&s, v.is_number() ? "<td class=\"n\">" : "<td>",
                      Escape(ScalarText(v)), "</td>");
    }
    s += "</tr>\n";
  }
  if (rows.size() > kMaxTableRows) {
    absl::StrAppend(&s, "<tr><td colspan=\"", cols.size(), "\">… ",
                    rows.size() - kMaxTableRows, " more rows</td></tr>\n");
  }
  return s + "</table>\n";
}

std::string ObjectFields(const std::string& id, const json& object,
                         const std::vector<std::string>& skip) {
  if (!object.is_object()) return "";
  std::string rows;
  std::vector<std::pair<std::string, const json*>> nested;
  for (const auto& [k, v] : object.items()) {
    if (std::find(skip.begin(), skip.end(), k) != skip.end()) continue;
    // Nested objects get their own table (a JSON dump would be unreadable)
    // down to a few levels.
    if (IsObjectArray(v) ||
        (v.is_object() && !v.empty() &&
         std::count(id.begin(), id.end(), '.') < kMaxNesting)) {
      nested.emplace_back(k, &v);
    } else {
      Row(rows, k, Escape(ScalarText(v)));
    }
  }
  std::string s;
  if (!rows.empty()) {
    s = absl::StrCat("<table class=\"kv\">\n", rows, "</table>\n");
  }
  for (const auto& [k, v] : nested) {
    const std::string sub = absl::StrCat(id, ".", k);
    // Headed by the path below the section's own field.
    absl::StrAppend(
        &s, "<h3>", Escape(sub.substr(sub.find('.') + 1)), "</h3>",
        v->is_object() ? ObjectFields(sub, *v) : ObjectArray(sub, *v));
  }
  return s;
}

}  // namespace care::convert::html
