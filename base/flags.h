// Command-line parsing for the project's binaries: "--name value",
// "--name=value", boolean "--name", and positionals. Every error names the
// flag and what was expected, so a user can fix the command line.
#ifndef CARE_BASE_FLAGS_H_
#define CARE_BASE_FLAGS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care {

class Flags {
 public:
  // `boolean_flags` never take a value ("--json"); every other flag does.
  static absl::StatusOr<Flags> Parse(
      const std::vector<std::string>& args,
      const std::set<std::string>& boolean_flags);

  bool Has(absl::string_view name) const;
  bool Bool(absl::string_view name) const { return Has(name); }
  std::optional<std::string> String(absl::string_view name) const;
  std::string StringOr(absl::string_view name, std::string fallback) const;
  // Missing -> fallback; malformed -> InvalidArgument naming the flag.
  absl::StatusOr<int64_t> IntOr(absl::string_view name, int64_t fallback) const;
  absl::StatusOr<double> DoubleOr(absl::string_view name,
                                  double fallback) const;
  absl::StatusOr<std::string> Required(absl::string_view name) const;

  const std::vector<std::string>& positionals() const { return positionals_; }

  // InvalidArgument naming the first flag not in `known` (typos fail loudly).
  absl::Status CheckKnown(const std::set<std::string>& known) const;

 private:
  std::map<std::string, std::string, std::less<>> values_;
  std::vector<std::string> positionals_;
};

}  // namespace care

#endif  // CARE_BASE_FLAGS_H_
