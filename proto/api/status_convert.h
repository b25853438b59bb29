// The single conversion between absl::Status (used everywhere inside) and
// grpc::Status (used only at the service edge). The canonical code spaces are
// identical, so the mapping is numeric.
#ifndef CARE_API_STATUS_CONVERT_H_
#define CARE_API_STATUS_CONVERT_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace care::api {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace care::api

#endif  // CARE_API_STATUS_CONVERT_H_
