#include "support/fixtures.h"

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

std::string BinaryPath(const std::string& relative) {
  return std::string(CARE_BINARY_DIR) + "/" + relative;
}

std::string MakeTempDir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp && *tmp ? tmp : "/tmp") + "/" + prefix + "-XXXXXX";
  char* made = mkdtemp(pattern.data());
  return made ? std::string(made) : std::string();
}

}  // namespace care::testing
