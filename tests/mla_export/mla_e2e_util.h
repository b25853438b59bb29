// Shared setup of the DeepSeek-V3 end-to-end tests (export_e2e_test,
// heal_e2e_test): a cluster (worker_service/cluster_test_base.h) with one
// `care-worker serve`, the stories260K deepseek-v3 job's carectl flags, and
// the reload check of a written checkpoint.
#ifndef CARE_TESTS_MLA_EXPORT_MLA_E2E_UTIL_H_
#define CARE_TESTS_MLA_EXPORT_MLA_E2E_UTIL_H_

#include <string>
#include <vector>

#include "worker_service/cluster_test_base.h"

namespace care::testing {

class MlaEndToEndTest : public ClusterTest {
 protected:
  // Starts worker "w1" (`care-worker serve` on dir_/work).
  void StartServeWorker();

  // `carectl submit --wait --plain` of stories260K to `out` at 50 % KV save
  // in the deepseek-v3 layout (rope_dim 8, freqfold 1), calibrated on 64 ×
  // 32 tokens of TinyStories and evaluated on 8 windows of 128 tokens, with
  // `extra` flags before the data flags.
  CommandResult SubmitDeepseekV3(const std::string& out,
                                 const std::vector<std::string>& extra = {});

  // The job id `carectl submit --wait --plain` printed ("submitted <id>").
  static std::string SubmittedId(const CommandResult& wait);

  // `care-worker eval` of the checkpoint in `out` on the job's evaluation
  // windows reproduces `ppl`: the same float32 tensors, so only the
  // accumulation order may differ (~1e-6 relative; 1e-4 bounds it).
  void ExpectReloadedPpl(const std::string& out, double ppl);
};

}  // namespace care::testing

#endif  // CARE_TESTS_MLA_EXPORT_MLA_E2E_UTIL_H_
