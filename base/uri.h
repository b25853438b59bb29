// Syntax of the URIs a job names: local paths (plain absolute paths or
// file:///abs/path) and Hugging Face Hub references (hf://org/name[@rev]).
// Parsing only; resolving a URI to files is model_source.h's job.
#ifndef CARE_BASE_URI_H_
#define CARE_BASE_URI_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care {

struct Uri {
  enum class Kind { kLocal, kHuggingFace };
  Kind kind = Kind::kLocal;
  // kLocal: the absolute, lexically normalized path (no "." or ".." parts).
  std::string path;
  // kHuggingFace: "org/name" (or "name"), and the revision (default "main").
  std::string repo_id;
  std::string revision;
};

// Accepts "/abs/path", "file:///abs/path" and, when allow_hub is true,
// "hf://org/name[@revision]". Rejects relative paths, ".." components, empty
// strings, NUL bytes and unknown schemes with an InvalidArgument naming the
// problem.
absl::StatusOr<Uri> ParseUri(absl::string_view text, bool allow_hub = true);

}  // namespace care

#endif  // CARE_BASE_URI_H_
