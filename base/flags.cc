#include "base/flags.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace care {

absl::StatusOr<Flags> Flags::Parse(const std::vector<std::string>& args,
                                   const std::set<std::string>& boolean_flags) {
  Flags flags;
  bool only_positionals = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (only_positionals || !absl::StartsWith(arg, "--") || arg == "-") {
      flags.positionals_.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positionals = true;
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (boolean_flags.count(name) != 0) {
      value = "true";
    } else {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, " needs a value"));
      }
      value = args[++i];
    }
    if (name.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed flag '", arg, "'"));
    }
    flags.values_[name] = value;
  }
  return flags;
}

bool Flags::Has(absl::string_view name) const {
  return values_.find(name) != values_.end();
}

std::optional<std::string> Flags::String(absl::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

std::string Flags::StringOr(absl::string_view name,
                            std::string fallback) const {
  auto v = String(name);
  return v ? *v : fallback;
}

absl::StatusOr<int64_t> Flags::IntOr(absl::string_view name,
                                     int64_t fallback) const {
  auto v = String(name);
  if (!v) return fallback;
  int64_t out = 0;
  if (!absl::SimpleAtoi(*v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, " expects an integer, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<double> Flags::DoubleOr(absl::string_view name,
                                       double fallback) const {
  auto v = String(name);
  if (!v) return fallback;
  double out = 0;
  if (!absl::SimpleAtod(*v, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, " expects a number, got '", *v, "'"));
  }
  return out;
}

absl::StatusOr<std::string> Flags::Required(absl::string_view name) const {
  auto v = String(name);
  if (!v || v->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("flag --", name, " is required"));
  }
  return *v;
}

absl::Status Flags::CheckKnown(const std::set<std::string>& known) const {
  for (const auto& [name, value] : values_) {
    if (known.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
  }
  return absl::OkStatus();
}

}  // namespace care
