// The worker's device (issue 11): parsing --device, and classifying a
// failure that comes from the device (out of memory, device lost) as the
// infrastructure's, retryable on another worker.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/failure.h"
#include "service/options.h"

namespace care::worker {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

TEST(ParseWorkerDeviceTest, AcceptsCpuCudaAndOrdinals) {
  struct Case {
    std::string text;
    care::v1::Device kind;
    int ordinal;
  };
  for (const Case& c :
       std::vector<Case>{{"cpu", care::v1::DEVICE_CPU, 0},
                         {"cuda", care::v1::DEVICE_CUDA, 0},
                         {"cuda:0", care::v1::DEVICE_CUDA, 0},
                         {"cuda:7", care::v1::DEVICE_CUDA, 7},
                         {"cuda:1023", care::v1::DEVICE_CUDA, 1023}}) {
    auto parsed = ParseWorkerDevice(c.text);
    ASSERT_TRUE(parsed.ok()) << c.text << ": " << parsed.status();
    EXPECT_EQ(parsed->kind, c.kind) << c.text;
    EXPECT_EQ(parsed->ordinal, c.ordinal) << c.text;
  }
}

TEST(ParseWorkerDeviceTest, RejectsOtherFormsNamingTheFlag) {
  for (const char* text : {"", "gpu", "CUDA", "cuda:", "cuda:-1", "cuda:1024",
                           "cuda:01", "cuda:1x", "cuda0", "any", "cpu:0"}) {
    auto parsed = ParseWorkerDevice(text);
    ASSERT_FALSE(parsed.ok()) << text;
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(parsed.status().message()),
                StartsWith("flag --device: expected cpu, cuda or cuda:N"));
  }
}

TEST(ServiceOptionsTest, DeviceStringIsWhatThePipelineOpens) {
  ServiceOptions o;
  EXPECT_EQ(o.DeviceString(), "cpu");
  o.device = care::v1::DEVICE_CUDA;
  o.device_ordinal = 3;
  EXPECT_EQ(o.DeviceString(), "cuda:3");
}

care::v1::Progress AtLayer(int layer, int count) {
  care::v1::Progress p;
  p.set_stage(care::v1::STAGE_CALIBRATING);
  p.set_layer(layer);
  p.set_layer_count(count);
  return p;
}

constexpr char kGpu[] = "cuda:0 (NVIDIA H100 80GB HBM3)";

TEST(DeviceFailureTest, OutOfDeviceMemoryIsInfrastructureAndRetryable) {
  ClassifiedFailure f = ClassifyFailure(
      absl::ResourceExhaustedError(
          "cuda:0: cannot allocate 2147483648 bytes (1073741824 free)"),
      AtLayer(3, 8), kGpu);
  EXPECT_EQ(f.failure.reason(), care::v1::FAILURE_REASON_INFRASTRUCTURE);
  EXPECT_TRUE(f.retryable);
  const std::string& m = f.failure.message();
  EXPECT_THAT(m, StartsWith(absl::StrCat("device ", kGpu, ": out of memory: ")))
      << m;
  EXPECT_THAT(m, HasSubstr("cannot allocate 2147483648 bytes")) << m;
  EXPECT_THAT(m, HasSubstr("at layer 3 (layers 0-7)")) << m;
  EXPECT_THAT(m, HasSubstr("retried on another worker")) << m;
}

TEST(DeviceFailureTest, LostDeviceIsInfrastructureAndRetryable) {
  ClassifiedFailure f =
      ClassifyFailure(absl::UnavailableError("cuda:0: device lost (Xid 79)"),
                      AtLayer(0, 2), kGpu);
  EXPECT_EQ(f.failure.reason(), care::v1::FAILURE_REASON_INFRASTRUCTURE);
  EXPECT_TRUE(f.retryable);
  EXPECT_THAT(f.failure.message(),
              StartsWith(absl::StrCat("device ", kGpu, ": unavailable: ")));
}

TEST(DeviceFailureTest, InputErrorsOnAGpuWorkerStayTheUsers) {
  // The device does not turn a bad input into a retry.
  ClassifiedFailure f = ClassifyFailure(
      absl::InvalidArgumentError("config.json: hidden_size missing"),
      AtLayer(0, 0), kGpu);
  EXPECT_EQ(f.failure.reason(), care::v1::FAILURE_REASON_USER_INPUT);
  EXPECT_FALSE(f.retryable);
  EXPECT_THAT(f.failure.message(), Not(HasSubstr("device")));
  f = ClassifyFailure(absl::InternalError("bug"), AtLayer(0, 0), kGpu);
  EXPECT_EQ(f.failure.reason(), care::v1::FAILURE_REASON_INTERNAL);
  EXPECT_FALSE(f.retryable);
}

TEST(DeviceFailureTest, CpuWorkerMessagesAreUnchanged) {
  for (absl::string_view device : {"", "cpu"}) {
    ClassifiedFailure f =
        ClassifyFailure(absl::ResourceExhaustedError("disk full"),
                        care::v1::Progress(), device);
    EXPECT_EQ(f.failure.reason(), care::v1::FAILURE_REASON_INFRASTRUCTURE);
    EXPECT_TRUE(f.retryable);
    EXPECT_EQ(f.failure.message(), "disk full");
  }
}

}  // namespace
}  // namespace care::worker
