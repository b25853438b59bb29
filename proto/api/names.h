// The words of the API enums, one table per enum, shared by specs, flags,
// log lines, metric labels, the worker's pipeline options and carectl
// output, so a value reads the same everywhere. Call sites add only what is
// theirs (carectl's "care (default)" for an unset method, ...).
#ifndef CARE_API_NAMES_H_
#define CARE_API_NAMES_H_

#include <cstddef>
#include <optional>

#include "absl/strings/string_view.h"
#include "care/v1/job.pb.h"

namespace care::api {

template <typename Enum>
struct EnumWord {
  Enum value;
  absl::string_view word;
};

inline constexpr EnumWord<v1::Method> kMethodWords[] = {
    {v1::METHOD_CARE, "care"},
    {v1::METHOD_CARE_C, "care-c"},
    {v1::METHOD_ASVD, "asvd"},
    {v1::METHOD_SVD, "svd"},
    {v1::METHOD_PCA, "pca"}};
// "deepseek_v3" is accepted on input as the model_type spelling.
inline constexpr EnumWord<v1::OutputLayout> kLayoutWords[] = {
    {v1::OUTPUT_LAYOUT_LATENT, "latent"},
    {v1::OUTPUT_LAYOUT_DEEPSEEK_V3, "deepseek-v3"},
    {v1::OUTPUT_LAYOUT_DEEPSEEK_V3, "deepseek_v3"}};
inline constexpr EnumWord<v1::RankAllocation> kAllocationWords[] = {
    {v1::RANK_ALLOCATION_UNIFORM, "uniform"},
    {v1::RANK_ALLOCATION_ADJUSTED, "adjusted"},
    {v1::RANK_ALLOCATION_AUTO, "auto"}};
inline constexpr EnumWord<v1::OutputDtype> kDtypeWords[] = {
    {v1::OUTPUT_DTYPE_F32, "f32"},
    {v1::OUTPUT_DTYPE_F16, "f16"},
    {v1::OUTPUT_DTYPE_BF16, "bf16"}};
inline constexpr EnumWord<v1::Device> kDeviceWords[] = {
    {v1::DEVICE_ANY, "any"},
    {v1::DEVICE_CPU, "cpu"},
    {v1::DEVICE_CUDA, "cuda"}};
inline constexpr EnumWord<v1::JobState> kStateWords[] = {
    {v1::JOB_STATE_QUEUED, "queued"},
    {v1::JOB_STATE_RUNNING, "running"},
    {v1::JOB_STATE_CANCELLING, "cancelling"},
    {v1::JOB_STATE_SUCCEEDED, "succeeded"},
    {v1::JOB_STATE_FAILED, "failed"},
    {v1::JOB_STATE_CANCELLED, "cancelled"}};
inline constexpr EnumWord<v1::Stage> kStageWords[] = {
    {v1::STAGE_LOADING, "loading"},
    {v1::STAGE_CALIBRATING, "calibrating"},
    {v1::STAGE_DECOMPOSING, "decomposing"},
    {v1::STAGE_EVALUATING, "evaluating"},
    {v1::STAGE_WRITING, "writing"},
    {v1::STAGE_HEALING, "healing"}};
inline constexpr EnumWord<v1::FailureReason> kReasonWords[] = {
    {v1::FAILURE_REASON_USER_INPUT, "user input"},
    {v1::FAILURE_REASON_INFRASTRUCTURE, "infrastructure"},
    {v1::FAILURE_REASON_INTERNAL, "internal"}};
inline constexpr EnumWord<v1::EventType> kEventTypeWords[] = {
    {v1::EVENT_TYPE_STATE_CHANGED, "state"},
    {v1::EVENT_TYPE_STAGE_CHANGED, "stage"},
    {v1::EVENT_TYPE_PROGRESS, "progress"},
    {v1::EVENT_TYPE_LAYER_DONE, "layer"},
    {v1::EVENT_TYPE_LEASE_EXPIRED, "lease-expired"}};

// The word of `value`; "" when the table has none (unspecified, unknown).
template <typename Enum, size_t N>
constexpr absl::string_view WordOf(const EnumWord<Enum> (&table)[N],
                                   Enum value) {
  for (const EnumWord<Enum>& e : table) {
    if (e.value == value) return e.word;
  }
  return "";
}

// The value whose word is `word` (exactly); nullopt when none.
template <typename Enum, size_t N>
constexpr std::optional<Enum> ValueOf(const EnumWord<Enum> (&table)[N],
                                      absl::string_view word) {
  for (const EnumWord<Enum>& e : table) {
    if (e.word == word) return e.value;
  }
  return std::nullopt;
}

// "loading", "calibrating", "decomposing", "evaluating", "writing"; ""
// for STAGE_UNSPECIFIED or an unknown value.
inline absl::string_view StageWord(v1::Stage stage) {
  return WordOf(kStageWords, stage);
}

// True for SUCCEEDED, FAILED and CANCELLED: the job will not change again.
// The server and carectl both ask this one function.
bool IsTerminal(v1::JobState state);

}  // namespace care::api

#endif  // CARE_API_NAMES_H_
