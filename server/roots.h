// Restricts the local paths a job may name to configured roots: models under
// --model-root, datasets under --data-root, outputs under --output-root.
// ".." never passes (the URI parser rejects it), and a symlink cannot lead
// out: the longest existing prefix of the path is resolved with realpath(3)
// before the comparison, component by component.
#ifndef CARE_SERVER_ROOTS_H_
#define CARE_SERVER_ROOTS_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"

namespace care::server {

struct RootsConfig {
  std::vector<std::string> model_roots;
  std::vector<std::string> data_roots;
  std::vector<std::string> output_roots;
  // hf://org/name model URIs are resolved by the workers' Hub cache, not on
  // this file system; they are allowed unless this is false.
  bool allow_hub_models = true;
};

class UriRoots {
 public:
  // Resolves every root with realpath(3); a root that does not exist is
  // InvalidArgument naming its flag.
  static absl::StatusOr<UriRoots> Create(const RootsConfig& config);

  // InvalidArgument naming the spec field (model_uri, output_uri,
  // calibration.dataset_uri, evaluation.dataset_uri) that lies outside its
  // roots. Call after care::api::ValidateJobSpec.
  absl::Status CheckSpec(const v1::JobSpec& spec) const;

  // `path` (absolute, normalized) resolved through existing symlinks.
  static absl::StatusOr<std::string> ResolveExistingPrefix(
      const std::string& path);

 private:
  absl::Status CheckOne(absl::string_view field, const std::string& uri,
                        const std::vector<std::string>& roots,
                        absl::string_view flag, bool strictly_inside) const;

  RootsConfig resolved_;
};

}  // namespace care::server

#endif  // CARE_SERVER_ROOTS_H_
