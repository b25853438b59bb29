// Shared pieces of the HTML report's sections (report_html.h): tolerant
// access to the report JSON (a missing or mistyped field is absent, never an
// error) and small HTML builders. Every string that reaches the markup is
// escaped here or by the caller with svg::Escape.
#ifndef CARE_CONVERT_REPORT_HTML_UTIL_H_
#define CARE_CONVERT_REPORT_HTML_UTIL_H_

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace care::convert::html {

using nlohmann::json;

constexpr char kKColor[] = "#4c72b0";
constexpr char kVColor[] = "#dd8452";

std::optional<double> NumAt(const json& j, const char* key);
// Strings as they are, booleans as yes/no, numbers compact; else "".
std::string StrAt(const json& j, const char* key);
// j[key], or a null value.
const json& At(const json& j, const char* key);
// The number, or "—".
std::string Opt(const std::optional<double>& v);
// A JSON value of any type as short text (tables of unknown fields).
std::string ScalarText(const json& v);
// A [begin, end] pair of token positions as the half-open "[begin, end)".
std::string RangeText(const json& v);
// Lists of numbers as "4 4 6 8" (rank lists).
std::string IntList(const json& v);

// <tr><th>key</th><td>value</td></tr>; `value` is markup (escape it).
void Row(std::string& s, const std::string& key, const std::string& value);
std::string Code(const std::string& text);
std::string Card(const std::string& key, const std::string& value,
                 const std::string& detail);
std::string Percent(double fraction);

// Per layer of a JSON array of layer objects: the number at `key` (0 when
// absent) and the layer's name (its "layer" field, else its position).
std::vector<double> LayerValues(const json& layers, const char* key);
std::vector<std::string> LayerNames(const json& layers);

// An array of objects as a table (union of their keys, in first-seen
// order; an object-valued field is one column per field of it, "key.sub"),
// plus a bar chart of the first loss-like numeric column when the rows are
// labelled; `id` names the chart.
std::string ObjectArray(const std::string& id, const json& records);
// An object of fields nothing else renders: scalars as a key/value table,
// arrays of objects as ObjectArray tables (ids `id`.key); `skip` keys are
// left out. Empty when nothing is left.
std::string ObjectFields(const std::string& id, const json& object,
                         const std::vector<std::string>& skip = {});

}  // namespace care::convert::html

#endif  // CARE_CONVERT_REPORT_HTML_UTIL_H_
