#include "support/fixtures.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace care::testing {

std::string FixturesRoot() {
  // Lexically normalized: URI parsing rejects ".." components.
  std::filesystem::path root =
      (std::getenv("CARE_FIXTURES") && *std::getenv("CARE_FIXTURES"))
          ? std::filesystem::path(std::getenv("CARE_FIXTURES"))
          : std::filesystem::path(CARE_SOURCE_DIR) / "../shared/fixtures";
  return std::filesystem::absolute(root).lexically_normal().string();
}

std::string FixturePath(const std::string& relative) {
  return FixturesRoot() + "/" + relative;
}

bool FixturesAvailable() {
  return std::filesystem::exists(FixturesRoot() + "/README.md");
}

bool FixturesRequired() {
  const char* env = std::getenv("CARE_REQUIRE_FIXTURES");
  return env != nullptr && std::string(env) == "1";
}

std::string TestDevice() {
  const char* env = std::getenv("CARE_TEST_DEVICE");
  return env != nullptr && *env != '\0' ? std::string(env) : "cpu";
}

std::string BinaryPath(const std::string& relative) {
  return std::string(CARE_BINARY_DIR) + "/" + relative;
}

ShellResult RunCareWorker(const std::string& args, bool with_stderr) {
  const std::string command = BinaryPath("worker/cli/care-worker") + " " +
                              args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  ShellResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    result.output.append(buffer, n);
  }
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  return made ? std::string(made) : std::string();
}

}  // namespace care::testing
