#include "care/io/model_source.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "base/uri.h"
#include "care/io/file_util.h"

namespace care::io {

absl::StatusOr<std::string> ResolveModelDir(absl::string_view uri,
                                            const HubOptions& options) {
  CARE_ASSIGN_OR_RETURN(Uri parsed, ParseUri(uri));
  if (parsed.kind == Uri::Kind::kLocal) {
    if (!IsDirectory(parsed.path)) {
      return absl::NotFoundError(
          absl::StrCat("model directory ", parsed.path, " does not exist"));
    }
    return parsed.path;
  }
  std::optional<std::string> cached =
      FindCachedSnapshot(options, parsed.repo_id, parsed.revision);
  if (cached) return *cached;
  return DownloadSnapshot(options, parsed.repo_id, parsed.revision);
}

absl::StatusOr<std::string> ResolveModelDir(absl::string_view uri) {
  return ResolveModelDir(uri, HubOptions::FromEnvironment());
}

}  // namespace care::io
