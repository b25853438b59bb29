// OpenBackend: "cpu" is built in; unknown names and unavailable CUDA
// devices fail with messages naming the device and the plugin paths tried.
#include "care/compute/registry.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace care::compute {
namespace {

// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(RegistryTest, CpuOpens) {
  auto b = OpenBackend("cpu");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "cpu");
  EXPECT_EQ((*b)->kind(), DeviceKind::kCpu);
  auto shared = SharedBackend("cpu");
  ASSERT_TRUE(shared.ok());
  EXPECT_EQ(*shared, *SharedBackend("cpu"));  // one per process
}

TEST(RegistryTest, UnknownDeviceIsNamed) {
  for (const char* name : {"tpu", "cuda:", "cuda:-1", "cudax", "cpu:0", ""}) {
    auto b = OpenBackend(name);
    ASSERT_FALSE(b.ok()) << name;
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(b.status().message().find(absl::StrCat("'", name, "'")),
              std::string::npos)
        << b.status();
  }
}

TEST(RegistryTest, MissingPluginFromEnvIsNamed) {
  const std::string missing = "/nonexistent/dir/libcare_cuda_backend.so";
  ScopedEnv env("CARE_CUDA_BACKEND", missing.c_str());
  EXPECT_EQ(CudaPluginSearchPaths(), std::vector<std::string>{missing});
  auto b = OpenBackend("cuda:7");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("cuda:7"), std::string::npos)
      << b.status();
  EXPECT_NE(b.status().message().find(missing), std::string::npos)
      << b.status();
}

TEST(RegistryTest, NotAPluginIsRejected) {
  // An existing file that is not a shared library: dlopen's error is shown.
  ScopedEnv env("CARE_CUDA_BACKEND", "/proc/self/exe");
  auto b = OpenBackend("cuda");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("/proc/self/exe"), std::string::npos)
      << b.status();
}

// The ABI check runs before the plugin's create: a plugin of another
// version, or one without a version, is refused naming both versions (the
// fakes' create would say "create called").
TEST(RegistryTest, PluginOfAnotherAbiIsRefused) {
  ScopedEnv env("CARE_CUDA_BACKEND", FAKE_PLUGIN_OTHER);
  auto b = OpenBackend("cuda");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  const std::string msg(b.status().message());
  EXPECT_NE(msg.find(FAKE_PLUGIN_OTHER), std::string::npos) << msg;
  EXPECT_NE(msg.find("ABI version -7"), std::string::npos) << msg;
  EXPECT_NE(msg.find(absl::StrCat("needs ", kBackendAbiVersion)),
            std::string::npos)
      << msg;
  EXPECT_EQ(msg.find("create called"), std::string::npos) << msg;
}

TEST(RegistryTest, PluginWithoutAbiVersionIsRefused) {
  ScopedEnv env("CARE_CUDA_BACKEND", FAKE_PLUGIN_NONE);
  auto b = OpenBackend("cuda");
  ASSERT_FALSE(b.ok());
  const std::string msg(b.status().message());
  EXPECT_NE(msg.find(kCudaAbiEntryPoint), std::string::npos) << msg;
  EXPECT_EQ(msg.find("create called"), std::string::npos) << msg;
}

TEST(RegistryTest, PluginOfThisAbiIsCalled) {
  ScopedEnv env("CARE_CUDA_BACKEND", FAKE_PLUGIN_CURRENT);
  auto b = OpenBackend("cuda:3");
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("create called for ordinal 3"),
            std::string::npos)
      << b.status();
}

TEST(RegistryTest, Cuda7FailsNamingDeviceAndPaths) {
  // Without $CARE_CUDA_BACKEND: the installed and build-tree paths. Either
  // no plugin exists (every path is listed) or it exists and this machine
  // has no device 7 (its message names cuda:7).
  const char* env = std::getenv("CARE_CUDA_BACKEND");
  if (env != nullptr) unsetenv("CARE_CUDA_BACKEND");
  const std::vector<std::string> paths = CudaPluginSearchPaths();
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_NE(paths[0].find("/../lib/care/libcare_cuda_backend.so"),
            std::string::npos);
  EXPECT_NE(paths[1].find("/lib/libcare_cuda_backend.so"), std::string::npos);
  auto b = OpenBackend("cuda:7");
  if (env != nullptr) setenv("CARE_CUDA_BACKEND", env, 1);
  ASSERT_FALSE(b.ok()) << "a machine with 8 GPUs?";
  EXPECT_EQ(b.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(b.status().message().find("cuda:7"), std::string::npos)
      << b.status();
}

}  // namespace
}  // namespace care::compute
