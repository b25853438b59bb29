#include "care/compute/registry.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <system_error>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "care/compute/cpu_backend.h"

#ifndef CARE_CUDA_PLUGIN_BUILD_PATH
#define CARE_CUDA_PLUGIN_BUILD_PATH ""
#endif

namespace care::compute {

namespace {

constexpr char kPluginName[] = "libcare_cuda_backend.so";
constexpr char kEnvVar[] = "CARE_CUDA_BACKEND";

std::string ExeDir() {
  std::error_code ec;
  const std::filesystem::path exe =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  return exe.parent_path().string();
}

// Loads the plugin at `path` once per process (dlopen keeps a reference
// count; the handle is never closed because backends live in its code).
absl::StatusOr<CudaBackendCreateFn> LoadPlugin(const std::string& path) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* err = dlerror();
    return absl::UnavailableError(
        absl::StrCat("cannot load CUDA backend plugin ", path, ": ",
                     err != nullptr ? err : "dlopen failed"));
  }
  dlerror();
  // The version first: calling into a plugin of another ABI is undefined.
  void* abi = dlsym(handle, kCudaAbiEntryPoint);
  if (abi == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "CUDA backend plugin ", path, " has no ", kCudaAbiEntryPoint,
        " (built before the backend ABI was versioned); rebuild it from the "
        "same sources as this binary"));
  }
  const int version = reinterpret_cast<CudaAbiVersionFn>(abi)();
  if (version != kBackendAbiVersion) {
    return absl::UnavailableError(absl::StrCat(
        "CUDA backend plugin ", path, " has backend ABI version ", version,
        ", this binary needs ", kBackendAbiVersion,
        "; rebuild the plugin from the same sources as this binary"));
  }
  void* sym = dlsym(handle, kCudaEntryPoint);
  if (sym == nullptr) {
    const char* err = dlerror();
    return absl::UnavailableError(
        absl::StrCat("CUDA backend plugin ", path, " has no entry point ",
                     kCudaEntryPoint, ": ", err != nullptr ? err : "missing"));
  }
  return reinterpret_cast<CudaBackendCreateFn>(sym);
}

absl::StatusOr<std::unique_ptr<Backend>> OpenCuda(absl::string_view device,
                                                  int ordinal) {
  const std::vector<std::string> paths = CudaPluginSearchPaths();
  const bool from_env = std::getenv(kEnvVar) != nullptr;
  std::vector<std::string> tried;
  for (const std::string& path : paths) {
    tried.push_back(path);
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec)) {
      // An explicit $CARE_CUDA_BACKEND is the only path looked at.
      if (from_env) break;
      continue;
    }
    absl::StatusOr<CudaBackendCreateFn> create = LoadPlugin(path);
    if (!create.ok()) {
      return absl::UnavailableError(
          absl::StrCat("device '", device, "': ", create.status().message()));
    }
    std::string error;
    Backend* backend = (*create)(ordinal, &error);
    if (backend == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("device '", device, "': CUDA backend plugin ", path,
                       " could not open cuda:", ordinal, ": ",
                       error.empty() ? "no reason given" : error));
    }
    return std::unique_ptr<Backend>(backend);
  }
  return absl::UnavailableError(absl::StrCat(
      "device '", device, "': no CUDA backend plugin (", kPluginName,
      ") found; tried ", absl::StrJoin(tried, ", "),
      from_env ? absl::StrCat(" (from $", kEnvVar, ")")
               : absl::StrCat("; set $", kEnvVar,
                              " to the plugin's path or build with CUDA")));
}

}  // namespace

absl::StatusOr<Backend*> SharedBackend(absl::string_view device) {
  static std::mutex mu;
  // Leaked on purpose: backends from a plugin must not be destroyed after
  // the plugin's static state during process exit.
  static auto* backends = new std::map<std::string, std::unique_ptr<Backend>>;
  std::lock_guard<std::mutex> lock(mu);
  auto it = backends->find(std::string(device));
  if (it != backends->end()) return it->second.get();
  absl::StatusOr<std::unique_ptr<Backend>> opened = OpenBackend(device);
  if (!opened.ok()) return opened.status();
  Backend* b = opened->get();
  backends->emplace(std::string(device), *std::move(opened));
  return b;
}

std::vector<std::string> CudaPluginSearchPaths() {
  if (const char* env = std::getenv(kEnvVar); env != nullptr) {
    return {std::string(env)};
  }
  std::vector<std::string> paths;
  const std::string exe_dir = ExeDir();
  if (!exe_dir.empty()) {
    paths.push_back(absl::StrCat(exe_dir, "/../lib/care/", kPluginName));
  }
  const std::string build = CARE_CUDA_PLUGIN_BUILD_PATH;
  if (!build.empty()) paths.push_back(build);
  return paths;
}

absl::StatusOr<std::unique_ptr<Backend>> OpenBackend(absl::string_view device) {
  if (device == "cpu") return MakeCpuBackend();
  absl::string_view rest = device;
  if (absl::ConsumePrefix(&rest, "cuda")) {
    int ordinal = 0;
    if (rest.empty() || (absl::ConsumePrefix(&rest, ":") && !rest.empty() &&
                         absl::SimpleAtoi(rest, &ordinal) && ordinal >= 0)) {
      return OpenCuda(device, ordinal);
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown device '", device, "'; expected cpu, cuda or cuda:N (N >= 0)"));
}

}  // namespace care::compute
