#include "care/io/config_reader.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace care {

using nlohmann::json;

bool ConfigReader::Present(const char* key) const {
  auto it = j_.find(key);
  return it != j_.end() && !it->is_null();
}

absl::Status ConfigReader::Error(const char* key,
                                 absl::string_view what) const {
  return absl::InvalidArgumentError(
      absl::StrCat(origin_, ": field '", prefix_, key, "' ", what));
}

absl::StatusOr<int64_t> ConfigReader::Int(const char* key) const {
  if (!Present(key)) return Error(key, "is missing");
  const json& v = Get(key);
  if (!v.is_number_integer()) {
    return Error(key, absl::StrCat("must be an integer, got ", v.dump()));
  }
  return v.get<int64_t>();
}

absl::StatusOr<int64_t> ConfigReader::IntOr(const char* key,
                                            int64_t fallback) const {
  if (!Present(key)) return fallback;
  return Int(key);
}

absl::StatusOr<int64_t> ConfigReader::PositiveInt(const char* key) const {
  CARE_ASSIGN_OR_RETURN(int64_t v, Int(key));
  if (v <= 0) return Error(key, absl::StrCat("must be > 0, got ", v));
  return v;
}

absl::StatusOr<double> ConfigReader::Double(const char* key) const {
  if (!Present(key)) return Error(key, "is missing");
  const json& v = Get(key);
  if (!v.is_number()) {
    return Error(key, absl::StrCat("must be a number, got ", v.dump()));
  }
  return v.get<double>();
}

absl::StatusOr<double> ConfigReader::DoubleOr(const char* key,
                                              double fallback) const {
  if (!Present(key)) return fallback;
  return Double(key);
}

absl::StatusOr<bool> ConfigReader::BoolOr(const char* key,
                                          bool fallback) const {
  if (!Present(key)) return fallback;
  const json& v = Get(key);
  if (!v.is_boolean()) {
    return Error(key, absl::StrCat("must be true or false, got ", v.dump()));
  }
  return v.get<bool>();
}

absl::StatusOr<std::string> ConfigReader::StringOr(const char* key,
                                                   std::string fallback) const {
  if (!Present(key)) return fallback;
  const json& v = Get(key);
  if (!v.is_string()) {
    return Error(key, absl::StrCat("must be a string, got ", v.dump()));
  }
  return v.get<std::string>();
}

absl::StatusOr<std::vector<int64_t>> ConfigReader::IntList(
    const char* key) const {
  std::vector<int64_t> out;
  if (!Present(key)) return out;
  const json& v = Get(key);
  if (v.is_number_integer()) {
    out.push_back(v.get<int64_t>());
    return out;
  }
  if (!v.is_array()) {
    return Error(key,
                 absl::StrCat("must be a list of integers, got ", v.dump()));
  }
  for (const json& e : v) {
    if (!e.is_number_integer()) {
      return Error(key,
                   absl::StrCat("must be a list of integers, got ", v.dump()));
    }
    out.push_back(e.get<int64_t>());
  }
  return out;
}

}  // namespace care
