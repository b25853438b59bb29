// Locating the shared test fixtures and the built binaries from tests.
#ifndef CARE_TESTS_SUPPORT_FIXTURES_H_
#define CARE_TESTS_SUPPORT_FIXTURES_H_

#include <string>

namespace care::testing {

// Root of the fixtures: $CARE_FIXTURES, else <repo>/../shared/fixtures.
std::string FixturesRoot();

// FixturesRoot() + "/" + relative.
std::string FixturePath(const std::string& relative);

// True when the fixtures are present. Tests that need them call
// CARE_REQUIRE_FIXTURES(), which skips with a visible message when they are
// absent, unless $CARE_REQUIRE_FIXTURES=1 (set by CI), where it fails.
bool FixturesAvailable();
bool FixturesRequired();

// The compute device the engine and conversion tests run on:
// $CARE_TEST_DEVICE ("cpu", "cuda", "cuda:N"), default "cpu"
// (scripts/gpu-check.sh reruns the fixture tests with cuda).
std::string TestDevice();

// Path of a binary built by this project, e.g.
// BinaryPath("server/care-server").
std::string BinaryPath(const std::string& relative);

struct ShellResult {
  int exit_code = -1;  // -1 when the process did not exit normally.
  std::string output;  // stdout, plus stderr when asked for.
};

// Runs the built care-worker with `args` (shell syntax) and captures its
// output; stderr is merged into it or discarded.
ShellResult RunCareWorker(const std::string& args, bool with_stderr = true);

// A fresh, empty directory under $TMPDIR removed by the caller (or left for
// inspection when a test fails).
std::string MakeTempDir(const std::string& prefix);

// MakeTempDir, removed when the test program exits (for checkpoints a whole
// test binary shares).
std::string ProgramTempDir(const std::string& prefix);

}  // namespace care::testing

#define CARE_REQUIRE_FIXTURES()                                               \
  do {                                                                        \
    if (!::care::testing::FixturesAvailable()) {                              \
      if (::care::testing::FixturesRequired()) {                              \
        FAIL() << "fixtures not found at " << ::care::testing::FixturesRoot() \
               << " (set CARE_FIXTURES)";                                     \
      }                                                                       \
      GTEST_SKIP() << "fixtures not found at "                                \
                   << ::care::testing::FixturesRoot()                         \
                   << "; set CARE_FIXTURES to run this test";                 \
    }                                                                         \
  } while (false)

#endif  // CARE_TESTS_SUPPORT_FIXTURES_H_
