#include "support/fixtures.h"

#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "support/process.h"

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
  // Shell syntax (quoting, globs) through /bin/sh, run like every other
  // test process (support/process.h); output captured in a temp directory.
  ShellResult result;
  const std::string logs = MakeTempDir("care-worker-run");
  if (logs.empty()) return result;
  CommandResult run = RunCommand(
      {"/bin/sh", "-c",
       absl::StrCat("exec ", BinaryPath("worker/cli/care-worker"), " ", args,
                    with_stderr ? " 2>&1" : " 2>/dev/null")},
      logs, absl::Minutes(10));
  std::error_code ignored;
  std::filesystem::remove_all(logs, ignored);
  result.output = run.out;
  // Signals map to 128 + n in Wait(); ShellResult says -1 for them.
  result.exit_code =
      run.exit_code >= 0 && run.exit_code < 128 ? run.exit_code : -1;
  return result;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  return made ? std::string(made) : std::string();
}

namespace {

std::vector<std::string>& ProgramTempDirs() {
  static auto* dirs = new std::vector<std::string>();
  return *dirs;
}

void RemoveProgramTempDirs() {
  for (const std::string& dir : ProgramTempDirs()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }
}

}  // namespace

std::string ProgramTempDir(const std::string& prefix) {
  static const bool registered = std::atexit(RemoveProgramTempDirs) == 0;
  (void)registered;
  std::string dir = MakeTempDir(prefix);
  if (!dir.empty()) ProgramTempDirs().push_back(dir);
  return dir;
}

}  // namespace care::testing
