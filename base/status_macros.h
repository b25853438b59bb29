// Early-return helpers for absl::Status and absl::StatusOr<T>.
#ifndef CARE_BASE_STATUS_MACROS_H_
#define CARE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define CARE_STATUS_CONCAT_INNER_(a, b) a##b
#define CARE_STATUS_CONCAT_(a, b) CARE_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function when it is not OK.
#define CARE_RETURN_IF_ERROR(expr)               \
  do {                                           \
    const ::absl::Status care_status_ = (expr);  \
    if (!care_status_.ok()) return care_status_; \
  } while (false)

// `CARE_ASSIGN_OR_RETURN(auto x, F());` declares/assigns x from an OK StatusOr
// or returns its status.
#define CARE_ASSIGN_OR_RETURN(lhs, expr)                                     \
  CARE_ASSIGN_OR_RETURN_IMPL_(CARE_STATUS_CONCAT_(care_statusor_, __LINE__), \
                              lhs, expr)

#define CARE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr)   \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CARE_BASE_STATUS_MACROS_H_
