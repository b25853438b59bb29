#include "service/failure.h"

#include "absl/strings/str_cat.h"
#include "api/names.h"

namespace care::worker {

ClassifiedFailure ClassifyFailure(const absl::Status& status,
                                  const care::v1::Progress& where) {
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
  return out;
}

}  // namespace care::worker
