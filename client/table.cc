#include "client/table.h"

#include <algorithm>

namespace care::client {

namespace {

// Display width in code points, so UTF-8 values line up.
size_t Width(const std::string& text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80;
  return width;
}

void AppendPadded(std::string& out, const std::string& cell, size_t width) {
  out += cell;
  out.append(width - std::min(width, Width(cell)), ' ');
}

void TrimTrailingSpaces(std::string& line) {
  while (!line.empty() && line.back() == ' ') line.pop_back();
}

}  // namespace

void Table::AddRow(std::vector<std::string> row) {
  row.resize(header_.size());
  rows_.push_back(std::move(row));
}

std::string Table::Render() const {
  std::vector<size_t> widths(header_.size(), 0);
  for (size_t c = 0; c < header_.size(); ++c) widths[c] = Width(header_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) {
      widths[c] = std::max(widths[c], Width(row[c]));
    }
  }
  std::string out;
  auto render_row = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      if (c > 0) line += "  ";
      AppendPadded(line, row[c], widths[c]);
    }
    TrimTrailingSpaces(line);
    out += line;
    out += '\n';
  };
  render_row(header_);
  for (const auto& row : rows_) render_row(row);
  return out;
}

void KeyValueList::Add(std::string key, std::string value) {
  if (value.empty()) return;
  items_.emplace_back(std::move(key), std::move(value));
}

std::string KeyValueList::Render() const {
  size_t width = 0;
  for (const auto& [key, value] : items_) width = std::max(width, Width(key));
  std::string out;
  for (const auto& [key, value] : items_) {
    std::string line = key + ":";
    line.append(width + 2 - Width(key), ' ');
    line += value;
    TrimTrailingSpaces(line);
    out += line;
    out += '\n';
  }
  return out;
}

}  // namespace care::client
