// What the store unit tests share: a real SQLite file in a fresh directory,
// a fake clock, a change notifier, and the spec they submit.
#ifndef CARE_TESTS_SERVER_STORE_FIXTURE_H_
#define CARE_TESTS_SERVER_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>

#include "server/clock.h"
#include "server/store.h"
#include "support/fixtures.h"

namespace care::server {

inline v1::JobSpec TestSpec(int priority = 0,
                            v1::Device device = v1::DEVICE_ANY,
                            int max_attempts = 3) {
  v1::JobSpec spec;
  spec.set_model_uri("/models/m");
  spec.set_output_uri("/out/x");
  spec.mutable_kv_budget()->set_kv_save_fraction(0.5);
  spec.set_method(v1::METHOD_SVD);
  spec.set_priority(priority);
  spec.set_device(device);
  spec.set_max_attempts(max_attempts);
  return spec;
}

// Opens <fresh dir>/jobs.db in SetUp; the directory is kept when a test
// fails, for inspection.
class StoreFixture : public ::testing::Test {
 protected:
  explicit StoreFixture(std::string dir_prefix)
      : dir_prefix_(std::move(dir_prefix)) {}

  void SetUp() override {
    dir_ = care::testing::MakeTempDir(dir_prefix_);
    ASSERT_FALSE(dir_.empty());
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    if (!HasFailure()) std::filesystem::remove_all(dir_);
  }
  // Closes and opens the store again on the same file (default options).
  void Reopen() {
    store_.reset();
    StoreOptions options;
    options.path = dir_ + "/jobs.db";
    auto store = Store::Open(options, &clock_, &notifier_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  std::string dir_;
  FakeClock clock_;
  ChangeNotifier notifier_;
  std::unique_ptr<Store> store_;

 private:
  std::string dir_prefix_;
};

}  // namespace care::server

#endif  // CARE_TESTS_SERVER_STORE_FIXTURE_H_
