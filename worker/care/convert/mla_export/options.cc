#include "care/convert/mla_export/options.h"

#include "absl/strings/str_cat.h"

namespace care::convert {

absl::StatusOr<OutputLayout> ParseOutputLayout(absl::string_view name) {
  if (name == "latent") return OutputLayout::kLatent;
  if (name == "deepseek-v3" || name == "deepseek_v3") {
    return OutputLayout::kDeepseekV3;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown layout \"", name, "\"; expected latent or deepseek-v3"));
}

std::string OutputLayoutName(OutputLayout layout) {
  return layout == OutputLayout::kDeepseekV3 ? "deepseek_v3" : "latent";
}

absl::StatusOr<LatentObjective> ParseLatentObjective(absl::string_view name) {
  if (name == "attention") return LatentObjective::kAttention;
  if (name == "activation") return LatentObjective::kActivation;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown latent objective \"", name,
                   "\"; expected attention or activation"));
}

std::string LatentObjectiveName(LatentObjective objective) {
  return objective == LatentObjective::kActivation ? "activation" : "attention";
}

absl::StatusOr<QkNormFoldMode> ParseQkNormFoldMode(absl::string_view name) {
  if (name == "auto") return QkNormFoldMode::kAuto;
  if (name == "scalar") return QkNormFoldMode::kScalar;
  if (name == "regression") return QkNormFoldMode::kRegression;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown q/k norm fold \"", name,
                   "\"; expected auto, scalar or regression"));
}

std::string QkNormFoldModeName(QkNormFoldMode mode) {
  switch (mode) {
    case QkNormFoldMode::kScalar:
      return "scalar";
    case QkNormFoldMode::kRegression:
      return "regression";
    case QkNormFoldMode::kAuto:
      break;
  }
  return "auto";
}

absl::StatusOr<OProjRefitMode> ParseOProjRefitMode(absl::string_view name) {
  if (name == "auto") return OProjRefitMode::kAuto;
  if (name == "off") return OProjRefitMode::kOff;
  if (name == "on") return OProjRefitMode::kOn;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown o_proj refit \"", name, "\"; expected auto, off or on"));
}

std::string OProjRefitModeName(OProjRefitMode mode) {
  switch (mode) {
    case OProjRefitMode::kOff:
      return "off";
    case OProjRefitMode::kOn:
      return "on";
    case OProjRefitMode::kAuto:
      break;
  }
  return "auto";
}

}  // namespace care::convert
