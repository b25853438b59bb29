#include "care/compute/cuda/context.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "care/compute/cuda/kernels.h"

namespace care::compute::cuda {
namespace {

std::string ErrorText(cudaError_t err) {
  return absl::StrCat(cudaGetErrorName(err), " (", cudaGetErrorString(err),
                      ")");
}

double Mib(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

CopyRecord::~CopyRecord() {
  for (cudaEvent_t e : {start, done, need}) {
    if (e != nullptr) cudaEventDestroy(e);
  }
}

DeviceWeight::~DeviceWeight() {
  if (record != nullptr && record->done != nullptr && memory != nullptr) {
    cudaStreamWaitEvent(compute_stream, record->done, 0);
  }
}

std::string ShapeOf(const Matrix& m) {
  return absl::StrCat("[", m.rows, ", ", m.cols, "]");
}

Context::Context(int ordinal)
    : ordinal_(ordinal), label_(absl::StrCat("cuda:", ordinal)) {}

absl::StatusOr<std::shared_ptr<Context>> Context::Open(int ordinal) {
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    return absl::UnavailableError(
        absl::StrCat("cuda:", ordinal, ": no usable NVIDIA driver or device: ",
                     "cudaGetDeviceCount failed: ", ErrorText(err)));
  }
  if (ordinal < 0 || ordinal >= count) {
    return absl::UnavailableError(absl::StrCat("cuda:", ordinal,
                                               ": no such device; ", count,
                                               " CUDA device(s) present"));
  }
  std::shared_ptr<Context> ctx(new Context(ordinal));
  CARE_RETURN_IF_ERROR(ctx->Init());
  return ctx;
}

absl::Status Context::Init() {
  const char* sync = std::getenv("CARE_CUDA_SYNC_CHECK");
  sync_check_ = sync != nullptr && std::string(sync) == "1";
  if (cudaError_t err = cudaSetDevice(ordinal_); err != cudaSuccess) {
    return absl::UnavailableError(
        absl::StrCat(label_, ": cudaSetDevice failed: ", ErrorText(err)));
  }
  cudaDeviceProp prop{};
  CARE_RETURN_IF_ERROR(Check(cudaGetDeviceProperties(&prop, ordinal_),
                             "cudaGetDeviceProperties", ""));
  device_name_ = prop.name;
  total_bytes_ = static_cast<int64_t>(prop.totalGlobalMem);
  if (prop.major < 9) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s (%s) has compute capability %d.%d; the CUDA backend is built for "
        "sm_90 and newer (CARE_CUDA_ARCHITECTURES)",
        label_, device_name_, prop.major, prop.minor));
  }
  CARE_RETURN_IF_ERROR(
      Check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
            "cudaStreamCreate", "compute stream"));
  CARE_RETURN_IF_ERROR(
      Check(cudaStreamCreateWithFlags(&copy_stream_, cudaStreamNonBlocking),
            "cudaStreamCreate", "copy stream"));
  // Keep freed pool memory cached instead of returning it to the driver at
  // every synchronization (layers allocate the same sizes again).
  cudaMemPool_t pool;
  CARE_RETURN_IF_ERROR(Check(cudaDeviceGetDefaultMemPool(&pool, ordinal_),
                             "cudaDeviceGetDefaultMemPool", ""));
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  CARE_RETURN_IF_ERROR(
      Check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold,
                                    &threshold),
            "cudaMemPoolSetAttribute", "release threshold"));
  CARE_RETURN_IF_ERROR(CheckBlas(cublasCreate(&cublas_), "cublasCreate", ""));
  CARE_RETURN_IF_ERROR(
      CheckBlas(cublasSetStream(cublas_, stream_), "cublasSetStream", ""));
  // No TF32 for fp32 GEMMs and SYRK: fp32 products stay fp32.
  CARE_RETURN_IF_ERROR(
      CheckBlas(cublasSetMathMode(cublas_, CUBLAS_DEFAULT_MATH),
                "cublasSetMathMode", ""));
  CARE_RETURN_IF_ERROR(
      CheckSolver(cusolverDnCreate(&cusolver_), "cusolverDnCreate", ""));
  CARE_RETURN_IF_ERROR(CheckSolver(cusolverDnSetStream(cusolver_, stream_),
                                   "cusolverDnSetStream", ""));
  CARE_RETURN_IF_ERROR(CheckSolver(cusolverDnCreateParams(&cusolver_params_),
                                   "cusolverDnCreateParams", ""));
  for (int i = 0; i < 2; ++i) {
    CARE_RETURN_IF_ERROR(
        Check(cudaHostAlloc(&staging_[i], kStagingBytes, cudaHostAllocDefault),
              "cudaHostAlloc", "pinned weight staging buffer"));
    CARE_RETURN_IF_ERROR(Check(
        cudaEventCreateWithFlags(&staging_free_[i], cudaEventDisableTiming),
        "cudaEventCreate", "staging event"));
  }
  // A first kernel: a missing sm_90 image or a broken driver shows here, at
  // open time, instead of in the middle of a job.
  CARE_ASSIGN_OR_RETURN(std::shared_ptr<void> probe,
                        Allocate(sizeof(float), "the startup probe"));
  CARE_RETURN_IF_ERROR(
      Check(LaunchFill(static_cast<float*>(probe.get()), 1.0f, 1, stream_),
            "startup probe kernel", "Fill [1]"));
  probe.reset();
  return Check(cudaStreamSynchronize(stream_), "startup probe", "sync");
}

Context::~Context() {
  cudaSetDevice(ordinal_);
  if (stream_ != nullptr) cudaStreamSynchronize(stream_);
  if (copy_stream_ != nullptr) cudaStreamSynchronize(copy_stream_);
  pending_.clear();
  for (int i = 0; i < 2; ++i) {
    if (staging_free_[i] != nullptr) cudaEventDestroy(staging_free_[i]);
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
  }
  if (cusolver_params_ != nullptr) cusolverDnDestroyParams(cusolver_params_);
  if (cusolver_ != nullptr) cusolverDnDestroy(cusolver_);
  if (cublas_ != nullptr) cublasDestroy(cublas_);
  if (copy_stream_ != nullptr) cudaStreamDestroy(copy_stream_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

absl::Status Context::SyncCheck(absl::string_view op,
                                absl::string_view detail) const {
  if (!sync_check_) return absl::OkStatus();
  return Check(cudaStreamSynchronize(stream_), op,
               absl::StrCat(detail, " (CARE_CUDA_SYNC_CHECK)"));
}

absl::Status Context::Enter() const {
  return Check(cudaSetDevice(ordinal_), "cudaSetDevice", "");
}

absl::Status Context::Check(cudaError_t err, absl::string_view op,
                            absl::string_view detail) const {
  if (err == cudaSuccess) return absl::OkStatus();
  const std::string where =
      absl::StrCat(label_, " (", device_name_, "): ", op,
                   detail.empty() ? "" : " ", detail, ": ", ErrorText(err));
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();  // not sticky: clear it for the next op
    return absl::ResourceExhaustedError(where);
  }
  return absl::InternalError(where);
}

absl::Status Context::CheckBlas(cublasStatus_t st, absl::string_view op,
                                absl::string_view detail) const {
  if (st == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string where = absl::StrCat(
      label_, " (", device_name_, "): ", op, detail.empty() ? "" : " ", detail,
      ": ", cublasGetStatusName(st), " (", cublasGetStatusString(st), ")");
  if (st == CUBLAS_STATUS_ALLOC_FAILED) {
    return absl::ResourceExhaustedError(where);
  }
  return absl::InternalError(where);
}

absl::Status Context::CheckSolver(cusolverStatus_t st, absl::string_view op,
                                  absl::string_view detail) const {
  if (st == CUSOLVER_STATUS_SUCCESS) return absl::OkStatus();
  const std::string where = absl::StrCat(
      label_, " (", device_name_, "): ", op, detail.empty() ? "" : " ", detail,
      ": cusolverStatus ", static_cast<int>(st));
  if (st == CUSOLVER_STATUS_ALLOC_FAILED) {
    return absl::ResourceExhaustedError(where);
  }
  return absl::InternalError(where);
}

absl::StatusOr<std::shared_ptr<void>> Context::Allocate(size_t bytes,
                                                        absl::string_view op,
                                                        cudaStream_t stream) {
  if (bytes == 0) return std::shared_ptr<void>();
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, bytes, stream);
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: out of memory allocating %.1f MiB for %s (backend holds %.1f "
        "MiB; device has %.1f MiB free of %.1f MiB)",
        label_, Mib(bytes), std::string(op), Mib(in_use_.load()), Mib(free_b),
        Mib(total_b)));
  }
  CARE_RETURN_IF_ERROR(
      Check(err, "cudaMallocAsync",
            absl::StrFormat("%.1f MiB for %s", Mib(bytes), std::string(op))));
  const int64_t now = in_use_.fetch_add(static_cast<int64_t>(bytes)) +
                      static_cast<int64_t>(bytes);
  int64_t peak = peak_.load();
  while (now > peak && !peak_.compare_exchange_weak(peak, now)) {
  }
  std::shared_ptr<Context> self = shared_from_this();
  return std::shared_ptr<void>(p, [self, bytes](void* q) {
    // Stream-ordered: freed after every op issued before this point.
    cudaSetDevice(self->ordinal_);
    cudaFreeAsync(q, self->stream_);
    self->in_use_.fetch_sub(static_cast<int64_t>(bytes));
  });
}

void Context::AddCopy(std::shared_ptr<CopyRecord> record, int64_t bytes,
                      double staging_ms) {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  pending_.push_back(std::move(record));
  totals_.weights_loaded += 1;
  totals_.weight_bytes_copied += bytes;
  totals_.host_staging_ms += staging_ms;
  // A long-running worker never asks for stats: fold what has finished so
  // the records (3 events each) do not pile up.
  if (pending_.size() >= 64) {
    // A failed query leaves the record pending; Stats() reports the error.
    FoldFinishedLocked(/*synchronized=*/false).IgnoreError();
  }
}

absl::Status Context::FoldFinishedLocked(bool synchronized) {
  std::vector<std::shared_ptr<CopyRecord>> keep;
  absl::Status status = absl::OkStatus();
  for (std::shared_ptr<CopyRecord>& r : pending_) {
    const bool used = r->need_recorded.load();
    // Loaded but not used yet, and still alive: decide later.
    bool finished = used || r.use_count() == 1;
    if (finished && !synchronized) {
      finished = cudaEventQuery(r->done) == cudaSuccess &&
                 (!used || cudaEventQuery(r->need) == cudaSuccess);
    }
    if (!finished || !status.ok()) {
      keep.push_back(std::move(r));
      continue;
    }
    float copy = 0, stall = 0;
    status = Check(cudaEventElapsedTime(&copy, r->start, r->done), "Stats",
                   "copy time");
    if (status.ok() && used) {
      status = Check(cudaEventElapsedTime(&stall, r->need, r->done), "Stats",
                     "stall time");
    }
    if (!status.ok()) {
      keep.push_back(std::move(r));
      continue;
    }
    const double exposed = std::clamp<double>(stall, 0.0, copy);
    totals_.copy_ms += copy;
    totals_.copy_exposed_ms += exposed;
    totals_.copy_hidden_ms += copy - exposed;
  }
  pending_ = std::move(keep);
  return status;
}

void Context::AddFlop(double gemm, double attention) {
  std::lock_guard<std::mutex> lock(stats_mutex_);
  totals_.gemm_flop += gemm;
  totals_.attention_flop += attention;
}

absl::StatusOr<CareCudaStats> Context::Stats() {
  CARE_RETURN_IF_ERROR(Enter());
  CARE_RETURN_IF_ERROR(
      Check(cudaStreamSynchronize(copy_stream_), "Stats", "copy stream"));
  CARE_RETURN_IF_ERROR(
      Check(cudaStreamSynchronize(stream_), "Stats", "compute stream"));
  std::lock_guard<std::mutex> lock(stats_mutex_);
  CARE_RETURN_IF_ERROR(FoldFinishedLocked(/*synchronized=*/true));
  CareCudaStats out = totals_;
  out.device_bytes_in_use = in_use_.load();
  out.device_bytes_peak = peak_.load();
  out.device_bytes_total = total_bytes_;
  return out;
}

}  // namespace care::compute::cuda
