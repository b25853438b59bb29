#include "proto/api/status_convert.h"

#include "gtest/gtest.h"

namespace care::api {
namespace {

TEST(StatusConvertTest, EveryCanonicalCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    absl::Status in(static_cast<absl::StatusCode>(code), code ? "why" : "");
    grpc::Status out = ToGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(out.error_code()), code);
    if (code != 0) {
      EXPECT_EQ(out.error_message(), "why");
    }
    EXPECT_EQ(FromGrpcStatus(out), in);
  }
}

}  // namespace
}  // namespace care::api
