// Lower-case words for API enums, shared by log lines, metric labels and
// carectl output so the same stage reads the same everywhere.
#ifndef CARE_API_NAMES_H_
#define CARE_API_NAMES_H_

#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"

namespace care::api {

// "loading", "calibrating", "decomposing", "evaluating", "writing"; ""
// for STAGE_UNSPECIFIED or an unknown value.
absl::string_view StageWord(care::v1::Stage stage);

}  // namespace care::api

#endif  // CARE_API_NAMES_H_
