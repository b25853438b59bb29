// Validation and defaulting of care.v1.JobSpec: the one place that knows the
// rules commented in proto/care/v1/job.proto. Used by care-server at submit
// time and by carectl before sending.
#ifndef CARE_API_SPEC_VALIDATION_H_
#define CARE_API_SPEC_VALIDATION_H_

#include <cstdint>

#include "absl/status/status.h"
#include "care/v1/job.pb.h"

namespace care::api {

// Defaults applied to unset (zero) fields.
inline constexpr int kDefaultCalibrationSamples = 256;
inline constexpr int kDefaultCalibrationSequenceLength = 32;
inline constexpr int kDefaultEvaluationWindowLength = 2048;
inline constexpr double kDefaultDamping = 0.01;
inline constexpr int kDefaultMaxAttempts = 3;
inline constexpr char kDefaultTextField[] = "text";
inline constexpr care::v1::Method kDefaultMethod = care::v1::METHOD_CARE;
inline constexpr care::v1::RankAllocation kDefaultAllocation =
    care::v1::RANK_ALLOCATION_UNIFORM;
// HealingSpec (HEALING_MODE_LOCAL): the worker's own defaults
// (care::convert::MlaExportOptions; a worker test checks they agree).
inline constexpr int64_t kDefaultHealingTokens = 262144;
inline constexpr int kDefaultHealingSteps = 400;

// Returns OK, or InvalidArgument whose message starts with the offending
// field's path (e.g. "calibration.samples: must be in [1, 1048576], got 0").
// Model-dependent limits (rank above g*d_h) are checked by the worker.
absl::Status ValidateJobSpec(const care::v1::JobSpec& spec);

// Fills unset fields with their documented defaults. Idempotent; call after
// ValidateJobSpec succeeded.
void ApplyJobSpecDefaults(care::v1::JobSpec& spec);

}  // namespace care::api

#endif  // CARE_API_SPEC_VALIDATION_H_
