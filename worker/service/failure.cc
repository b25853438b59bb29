#include "service/failure.h"

#include "absl/strings/str_cat.h"
#include "proto/api/names.h"

namespace care::worker {

ClassifiedFailure ClassifyFailure(const absl::Status& status,
                                  const care::v1::Progress& where,
                                  absl::string_view device) {
  ClassifiedFailure out;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kPermissionDenied:
      out.failure.set_reason(care::v1::FAILURE_REASON_USER_INPUT);
      break;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kAborted:
      out.failure.set_reason(care::v1::FAILURE_REASON_INFRASTRUCTURE);
      out.retryable = true;
      break;
    default:
      out.failure.set_reason(care::v1::FAILURE_REASON_INTERNAL);
  }
  std::string prefix(care::api::StageWord(where.stage()));
  if (!prefix.empty() && where.layer_count() > 1) {
    // The model's 0-based layer index, as in its tensor names.
    absl::StrAppend(&prefix, " at layer ", where.layer(), " (layers 0-",
                    where.layer_count() - 1, ")");
  }
  out.failure.set_message(prefix.empty()
                              ? std::string(status.message())
                              : absl::StrCat(prefix, ": ", status.message()));
  const bool gpu = !device.empty() && device != "cpu";
  if (gpu && (status.code() == absl::StatusCode::kResourceExhausted ||
              status.code() == absl::StatusCode::kUnavailable)) {
    out.failure.set_message(absl::StrCat(
        "device ", device, ": ",
        status.code() == absl::StatusCode::kResourceExhausted ? "out of memory"
                                                              : "unavailable",
        ": ", out.failure.message(),
        " (a device failure, not the job's: retried on another worker)"));
  }
  return out;
}

}  // namespace care::worker
