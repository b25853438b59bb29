// Hugging Face Hub models: the local cache layout shared with
// huggingface_hub ($HF_HUB_CACHE/models--org--name/{blobs,snapshots,refs}),
// and downloads through the hub HTTP API when a snapshot is not cached.
#ifndef CARE_IO_HUB_H_
#define CARE_IO_HUB_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace care::io {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";
  std::string token;      // Bearer token; empty for anonymous access.
  std::string cache_dir;  // The hub cache root (…/huggingface/hub).
  bool offline = false;   // Never touch the network.
  int max_attempts = 4;   // Per file; later attempts resume with Range.
  long connect_timeout_s = 20;
  long low_speed_time_s = 60;

  // HF_ENDPOINT, HF_TOKEN, HF_HUB_CACHE (else $HF_HOME/hub, else
  // ~/.cache/huggingface/hub), HF_HUB_OFFLINE=1.
  static HubOptions FromEnvironment();
};

// <cache_dir>/models--org--name.
std::string HubRepoCacheDir(const std::string& cache_dir,
                            absl::string_view repo_id);

// True when `dir` holds config.json and the safetensors weights
// (model.safetensors, or the index and every shard it names).
bool IsCompleteSnapshot(const std::string& dir);

// The cached snapshot directory of repo_id@revision (a branch, tag or
// commit), when it exists and is complete.
std::optional<std::string> FindCachedSnapshot(const HubOptions& options,
                                              absl::string_view repo_id,
                                              absl::string_view revision);

// Downloads what is missing of repo_id@revision into the cache: config.json,
// the safetensors weights (only the shards the index names), and every other
// top-level non-weight file (tokenizer, generation config, ...). Blobs are
// written as blobs/<etag>.incomplete, resumed after a dropped connection,
// checked against the API's size and LFS sha256, then renamed; the
// snapshot links and refs/<revision> are written last. Errors name the URL:
// NotFound (repo, revision or file), Unauthenticated (401), PermissionDenied
// (403, gated), Unavailable (network failure after max_attempts),
// ResourceExhausted (disk full), DataLoss (size or sha256 mismatch).
absl::StatusOr<std::string> DownloadSnapshot(const HubOptions& options,
                                             absl::string_view repo_id,
                                             absl::string_view revision);

}  // namespace care::io

#endif  // CARE_IO_HUB_H_
