#include "server/roots.h"

#include <limits.h>
#include <stdlib.h>

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "base/uri.h"

namespace care::server {
namespace {

absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot resolve ", path));
  }
  return std::string(buf);
}

// Component-wise: /data/models contains /data/models/x, not /data/models2.
bool IsInside(const std::string& path, const std::string& root, bool strictly) {
  if (path == root) return !strictly;
  if (root == "/") return true;
  return absl::StartsWith(path, root) && path[root.size()] == '/';
}

absl::StatusOr<std::vector<std::string>> ResolveRoots(
    const std::vector<std::string>& roots, absl::string_view flag) {
  std::vector<std::string> out;
  for (const std::string& root : roots) {
    if (root.empty() || root[0] != '/') {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": root '", root, "' must be an absolute path"));
    }
    absl::StatusOr<std::string> real = RealPath(root);
    if (!real.ok() || !std::filesystem::is_directory(*real)) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, ": root '", root, "' is not an existing directory"));
    }
    out.push_back(*real);
  }
  return out;
}

}  // namespace

absl::StatusOr<UriRoots> UriRoots::Create(const RootsConfig& config) {
  UriRoots roots;
  roots.resolved_.allow_hub_models = config.allow_hub_models;
  CARE_ASSIGN_OR_RETURN(roots.resolved_.model_roots,
                        ResolveRoots(config.model_roots, "--model-root"));
  CARE_ASSIGN_OR_RETURN(roots.resolved_.data_roots,
                        ResolveRoots(config.data_roots, "--data-root"));
  CARE_ASSIGN_OR_RETURN(roots.resolved_.output_roots,
                        ResolveRoots(config.output_roots, "--output-root"));
  return roots;
}

absl::StatusOr<std::string> UriRoots::ResolveExistingPrefix(
    const std::string& path) {
  // Walk up until a prefix exists, resolve it, re-append the missing tail.
  std::filesystem::path existing(path);
  std::filesystem::path tail;
  std::error_code ec;
  while (
      !std::filesystem::exists(std::filesystem::symlink_status(existing, ec)) ||
      ec) {
    if (!existing.has_relative_path()) break;
    tail = existing.filename() / tail;
    existing = existing.parent_path();
  }
  CARE_ASSIGN_OR_RETURN(std::string real, RealPath(existing.string()));
  if (tail.empty()) return real;
  std::string out = (std::filesystem::path(real) / tail).string();
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

absl::Status UriRoots::CheckOne(absl::string_view field, const std::string& uri,
                                const std::vector<std::string>& roots,
                                absl::string_view flag,
                                bool strictly_inside) const {
  absl::StatusOr<care::Uri> parsed_or = care::ParseUri(uri);
  if (!parsed_or.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", parsed_or.status().message()));
  }
  const care::Uri& parsed = *parsed_or;
  if (parsed.kind == care::Uri::Kind::kHuggingFace) {
    if (field == "model_uri" && resolved_.allow_hub_models) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": hf:// URIs are not allowed here"));
  }
  if (roots.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": local paths are disabled (the server has no ", flag, ")"));
  }
  absl::StatusOr<std::string> resolved = ResolveExistingPrefix(parsed.path);
  if (resolved.ok()) {
    for (const std::string& root : roots) {
      if (IsInside(*resolved, root, strictly_inside)) return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      field, ": '", parsed.path, "' is not ",
      strictly_inside ? "strictly inside" : "under", " an allowed root (", flag,
      " ", absl::StrJoin(roots, ", "), "; symlinks are resolved)"));
}

absl::Status UriRoots::CheckSpec(const v1::JobSpec& spec) const {
  CARE_RETURN_IF_ERROR(CheckOne("model_uri", spec.model_uri(),
                                resolved_.model_roots, "--model-root", false));
  // The output root itself is never a valid destination: it holds others'.
  CARE_RETURN_IF_ERROR(CheckOne("output_uri", spec.output_uri(),
                                resolved_.output_roots, "--output-root", true));
  if (!spec.calibration().dataset_uri().empty()) {
    CARE_RETURN_IF_ERROR(CheckOne("calibration.dataset_uri",
                                  spec.calibration().dataset_uri(),
                                  resolved_.data_roots, "--data-root", false));
  }
  if (!spec.evaluation().dataset_uri().empty()) {
    CARE_RETURN_IF_ERROR(CheckOne("evaluation.dataset_uri",
                                  spec.evaluation().dataset_uri(),
                                  resolved_.data_roots, "--data-root", false));
  }
  if (!spec.healing().dataset_uri().empty()) {
    CARE_RETURN_IF_ERROR(CheckOne("healing.dataset_uri",
                                  spec.healing().dataset_uri(),
                                  resolved_.data_roots, "--data-root", false));
  }
  for (int i = 0; i < spec.evaluation().tasks_size(); ++i) {
    CARE_RETURN_IF_ERROR(CheckOne(absl::StrCat("evaluation.tasks[", i, "].uri"),
                                  spec.evaluation().tasks(i).uri(),
                                  resolved_.data_roots, "--data-root", false));
  }
  return absl::OkStatus();
}

}  // namespace care::server
