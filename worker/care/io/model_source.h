// Resolves a model URI to a local directory: plain absolute paths and
// file:///abs/path as they are; hf://org/name[@revision] through the local
// Hugging Face cache, downloading what is missing (hub.h).
#ifndef CARE_IO_MODEL_SOURCE_H_
#define CARE_IO_MODEL_SOURCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/io/hub.h"

namespace care::io {

// Errors: InvalidArgument for a malformed URI (uri.h); NotFound for a local
// directory that does not exist; the errors of DownloadSnapshot for hf://.
absl::StatusOr<std::string> ResolveModelDir(absl::string_view uri,
                                            const HubOptions& options);
// Same, with HubOptions::FromEnvironment().
absl::StatusOr<std::string> ResolveModelDir(absl::string_view uri);

}  // namespace care::io

#endif  // CARE_IO_MODEL_SOURCE_H_
