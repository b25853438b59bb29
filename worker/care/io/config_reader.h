// Typed access to the fields of a config.json object, with errors that name
// the file and the field (`<origin>: field 'rope_scaling.factor' must be a
// number, got "x"`). Used by the common config parsing (model_config.cc)
// and by each model family's own fields (model_family.h).
#ifndef CARE_IO_CONFIG_READER_H_
#define CARE_IO_CONFIG_READER_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care {

class ConfigReader {
 public:
  // `prefix` names a nested object in errors ("rope_scaling.").
  ConfigReader(const nlohmann::json& j, absl::string_view origin,
               std::string prefix = "")
      : j_(j), origin_(origin), prefix_(std::move(prefix)) {}

  // Present and not null.
  bool Present(const char* key) const;
  const nlohmann::json& Get(const char* key) const { return j_.at(key); }
  absl::string_view origin() const { return origin_; }

  // InvalidArgument "<origin>: field '<prefix><key>' <what>".
  absl::Status Error(const char* key, absl::string_view what) const;

  absl::StatusOr<int64_t> Int(const char* key) const;
  absl::StatusOr<int64_t> IntOr(const char* key, int64_t fallback) const;
  absl::StatusOr<int64_t> PositiveInt(const char* key) const;
  absl::StatusOr<double> Double(const char* key) const;
  absl::StatusOr<double> DoubleOr(const char* key, double fallback) const;
  absl::StatusOr<bool> BoolOr(const char* key, bool fallback) const;
  absl::StatusOr<std::string> StringOr(const char* key,
                                       std::string fallback) const;
  // A list of integers (a single integer counts as a list of one); empty
  // when absent.
  absl::StatusOr<std::vector<int64_t>> IntList(const char* key) const;

 private:
  const nlohmann::json& j_;
  absl::string_view origin_;
  std::string prefix_;
};

}  // namespace care

#endif  // CARE_IO_CONFIG_READER_H_
