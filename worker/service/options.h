// `care-worker serve` settings: where the server is, how to authenticate,
// and the protocol's timing (heartbeat interval, long-poll wait, backoff).
#ifndef CARE_WORKER_SERVICE_OPTIONS_H_
#define CARE_WORKER_SERVICE_OPTIONS_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "base/flags.h"
#include "care/v1/job.pb.h"

namespace care::worker {

struct ServiceOptions {
  std::string server;  // host:port (required)
  std::string token;   // Worker bearer token (from --token-file).
  std::string token_file;
  bool tls = false;
  std::string tls_ca_file;  // PEM roots; empty = system roots.
  std::string worker_id;    // Default "<hostname>:<pid>".
  // --device cpu | cuda | cuda:N: advertised in every LeaseJob (the server
  // routes jobs by it) and handed to each job's pipeline.
  care::v1::Device device = care::v1::DEVICE_CPU;
  int device_ordinal = 0;  // N of cuda:N.
  // What the backend calls itself, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)":
  // `care-worker serve` opens the backend before starting the service and
  // passes its name as --device-name. Default: DeviceString().
  std::string device_name;
  // "cpu" or "cuda:N": the device the pipeline computes on.
  std::string DeviceString() const;
  // Scratch space: each job's pipeline process runs in its own directory
  // below it (cwd and TMPDIR), removed when the job ends. "" = the
  // service's cwd and the inherited TMPDIR.
  std::string work_dir;
  int threads = 0;             // Engine threads; 0 = all cores.
  std::string metrics_listen;  // "" = no /metrics endpoint.
  // Upper bound between heartbeats; also capped at a third of the lease.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Lower bound between progress-driven heartbeats.
  absl::Duration min_heartbeat_spacing = absl::Milliseconds(250);
  int lease_wait_ms = 20000;  // LeaseJob long-poll wait.
  absl::Duration backoff_initial = absl::Milliseconds(500);
  absl::Duration backoff_max = absl::Seconds(30);
  int max_jobs = 0;  // Exit after this many jobs; 0 = never.
};

struct ParsedDevice {
  care::v1::Device kind = care::v1::DEVICE_CPU;
  int ordinal = 0;
};
// "cpu", "cuda" (= cuda:0) or "cuda:N" with N in [0, 1023]; InvalidArgument
// naming --device and the accepted forms otherwise.
absl::StatusOr<ParsedDevice> ParseWorkerDevice(absl::string_view text);

// Flags of `care-worker serve` (valued and boolean).
const std::set<std::string>& ServiceFlagNames();
const std::set<std::string>& ServiceBoolFlagNames();

// Reads the token file (trailing whitespace trimmed); every error names the
// flag or file.
absl::StatusOr<ServiceOptions> ServiceOptionsFromFlags(const Flags& flags);

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateServerChannel(
    const ServiceOptions& options);

}  // namespace care::worker

#endif  // CARE_WORKER_SERVICE_OPTIONS_H_
