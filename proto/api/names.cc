#include "api/names.h"

namespace care::api {

absl::string_view StageWord(care::v1::Stage stage) {
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

}  // namespace care::api
