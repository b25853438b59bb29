// Adds context to an error without rebuilding it by hand (Abseil's and
// TensorStore's pattern): Annotate(s, "layer 3") turns "NOT_FOUND: tensor x
// is missing" into "NOT_FOUND: layer 3: tensor x is missing", keeping the
// code. An OK status stays OK.
#ifndef CARE_BASE_ANNOTATE_H_
#define CARE_BASE_ANNOTATE_H_

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace care {

inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace care

#endif  // CARE_BASE_ANNOTATE_H_
