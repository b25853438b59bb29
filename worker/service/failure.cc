#include "service/failure.h"

#include "absl/strings/str_cat.h"

namespace care::worker {

namespace {

const char* StageWord(care::v1::Stage stage) {
  switch (stage) {
    case care::v1::STAGE_LOADING:
      return "loading";
    case care::v1::STAGE_CALIBRATING:
      return "calibrating";
    case care::v1::STAGE_DECOMPOSING:
      return "decomposing";
    case care::v1::STAGE_EVALUATING:
      return "evaluating";
    case care::v1::STAGE_WRITING:
      return "writing";
    default:
      return "";
  }
}

}  // namespace

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
  std::string prefix = StageWord(where.stage());
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
