// Plain-text tables with columns padded to their widest cell: deterministic
// output for people and golden tests (no terminal width, no colour).
#ifndef CARE_CLIENT_TABLE_H_
#define CARE_CLIENT_TABLE_H_

#include <string>
#include <vector>

namespace care::client {

class Table {
 public:
  explicit Table(std::vector<std::string> header)
      : header_(std::move(header)) {}
  // Missing cells print empty; extra cells are an error of the caller and
  // are dropped.
  void AddRow(std::vector<std::string> row);
  // Columns separated by two spaces, trailing spaces trimmed, one "\n" per
  // line; the header is printed even with no rows.
  std::string Render() const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "key:   value" lines with the values aligned; empty values are skipped.
class KeyValueList {
 public:
  void Add(std::string key, std::string value);
  std::string Render() const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

}  // namespace care::client

#endif  // CARE_CLIENT_TABLE_H_
