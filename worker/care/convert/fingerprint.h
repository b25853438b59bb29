// The resume fingerprint (docs/worker.md "Resume"): SHA-256 over everything
// that decides a conversion's per-layer calibration results, so that state
// saved under it can be reused by any attempt, on any worker, that would
// compute the same results, and by no other.
#ifndef CARE_CONVERT_FINGERPRINT_H_
#define CARE_CONVERT_FINGERPRINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "care/convert/calibrate.h"
#include "care/convert/pipeline.h"
#include "care/engine/perplexity.h"

namespace care::convert {

// 64 hex digits over: a format version; the model directory's top-level
// files (name, size and modification time; the content of files up to
// 1 MiB, such as config.json and the tokenizer); the calibration and
// held-out windows actually used (token ids, lengths, held-out targets: this
// covers the data file, the tokenizer, samples, seq_len, seed, ranges and
// held-out settings); method, damping, whitening solver; and the compute
// device kind (cpu or cuda: their float32 rounding differs). Not included:
// budget and allocation (they act after calibration), thread count, and the
// evaluation settings (cached evaluation results carry their own key).
// Errors name the model directory.
absl::StatusOr<std::string> ResumeFingerprint(const std::string& model_dir,
                                              const CalibrationWindows& windows,
                                              const ConvertOptions& options);

// 16 hex digits identifying evaluation windows (ids, targets, lengths).
std::string EvalWindowsKey(const engine::EvalWindows& eval);

}  // namespace care::convert

#endif  // CARE_CONVERT_FINGERPRINT_H_
