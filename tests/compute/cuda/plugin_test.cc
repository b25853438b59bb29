// The plugin loads on any machine with the CUDA libraries, exports its two
// entry points, and either opens a device or says clearly why not.
#include <dlfcn.h>

#include <cstdlib>
#include <string>

#include "care/compute/backend.h"
#include "care/compute/cuda/stats.h"
#include "care/compute/registry.h"
#include "gtest/gtest.h"

namespace care::compute {
namespace {

// gpu-check.sh sets this: there a missing device is a failure, not a skip.
bool GpuExpected() {
  const char* v = std::getenv("CARE_TEST_EXPECT_GPU");
  return v != nullptr && std::string(v) == "1";
}

void* Plugin() {
  static void* handle = dlopen(CARE_CUDA_PLUGIN_PATH, RTLD_NOW | RTLD_LOCAL);
  return handle;
}

TEST(CudaPlugin, LoadsAndExportsEntryPoints) {
  ASSERT_NE(Plugin(), nullptr)
      << "dlopen(" << CARE_CUDA_PLUGIN_PATH << "): " << dlerror();
  EXPECT_NE(dlsym(Plugin(), kCudaEntryPoint), nullptr);
  EXPECT_NE(dlsym(Plugin(), kCareCudaStatsEntryPoint), nullptr);
  EXPECT_NE(dlsym(Plugin(), kCareCudaResetPeakEntryPoint), nullptr);
  // The plugin was built from this tree: it reports this tree's ABI.
  auto abi =
      reinterpret_cast<CudaAbiVersionFn>(dlsym(Plugin(), kCudaAbiEntryPoint));
  ASSERT_NE(abi, nullptr);
  EXPECT_EQ(abi(), kBackendAbiVersion);
}

TEST(CudaPlugin, CreateOpensADeviceOrSaysWhyNot) {
  ASSERT_NE(Plugin(), nullptr) << dlerror();
  auto create =
      reinterpret_cast<CudaBackendCreateFn>(dlsym(Plugin(), kCudaEntryPoint));
  ASSERT_NE(create, nullptr);
  std::string error;
  std::unique_ptr<Backend> b(create(0, &error));
  if (b == nullptr) {
    EXPECT_FALSE(GpuExpected()) << "no GPU opened: " << error;
    // The message names the device and carries the driver's reason.
    EXPECT_NE(error.find("cuda:0"), std::string::npos) << error;
    EXPECT_GT(error.size(), std::string("cuda:0: ").size()) << error;
    std::cout << "[ info ] no CUDA device here: " << error << "\n";
    return;
  }
  EXPECT_TRUE(error.empty()) << error;
  EXPECT_EQ(b->kind(), DeviceKind::kCuda);
  EXPECT_EQ(b->name().rfind("cuda:0 (", 0), 0u) << b->name();
  CareCudaStats stats{};
  auto stats_fn = reinterpret_cast<CareCudaStatsFn>(
      dlsym(Plugin(), kCareCudaStatsEntryPoint));
  ASSERT_NE(stats_fn, nullptr);
  EXPECT_EQ(stats_fn(b.get(), &stats), 0);
  EXPECT_GT(stats.device_bytes_total, 0);
}

TEST(CudaPlugin, UnknownOrdinalIsNamed) {
  ASSERT_NE(Plugin(), nullptr) << dlerror();
  auto create =
      reinterpret_cast<CudaBackendCreateFn>(dlsym(Plugin(), kCudaEntryPoint));
  ASSERT_NE(create, nullptr);
  std::string error;
  std::unique_ptr<Backend> b(create(1000, &error));
  EXPECT_EQ(b, nullptr);
  EXPECT_NE(error.find("cuda:1000"), std::string::npos) << error;
}

TEST(CudaPlugin, StatsRefuseANonCudaBackend) {
  ASSERT_NE(Plugin(), nullptr) << dlerror();
  auto stats_fn = reinterpret_cast<CareCudaStatsFn>(
      dlsym(Plugin(), kCareCudaStatsEntryPoint));
  ASSERT_NE(stats_fn, nullptr);
  absl::StatusOr<std::unique_ptr<Backend>> cpu = OpenBackend("cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  CareCudaStats stats{};
  EXPECT_EQ(stats_fn(cpu->get(), &stats), -1);
  EXPECT_EQ(stats_fn(nullptr, &stats), -1);
}

// Through the registry (the build-tree path is compiled into care_compute):
// either a backend, or Unavailable naming the plugin it loaded and why the
// device did not open.
TEST(CudaPlugin, RegistryFindsTheBuildTreePlugin) {
  if (std::getenv("CARE_CUDA_BACKEND") != nullptr) {
    GTEST_SKIP() << "$CARE_CUDA_BACKEND overrides the build-tree path";
  }
  absl::StatusOr<std::unique_ptr<Backend>> b = OpenBackend("cuda");
  if (b.ok()) {
    EXPECT_EQ((*b)->kind(), DeviceKind::kCuda);
    return;
  }
  EXPECT_FALSE(GpuExpected()) << b.status();
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable) << b.status();
  const std::string msg(b.status().message());
  EXPECT_NE(msg.find("libcare_cuda_backend.so"), std::string::npos) << msg;
  EXPECT_NE(msg.find("could not open cuda:0"), std::string::npos) << msg;
}

}  // namespace
}  // namespace care::compute
