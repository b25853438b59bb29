// Per-device state of the CUDA backend shared by the backend object and
// every allocation it hands out (a Matrix may outlive its Backend: its
// deleter keeps the Context alive): streams, library handles, pinned staging
// buffers, counters, and the error helpers that name device, op and shapes.
#ifndef CARE_COMPUTE_CUDA_CONTEXT_H_
#define CARE_COMPUTE_CUDA_CONTEXT_H_

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cusolverDn.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "care/compute/backend.h"
#include "care/compute/cuda/stats.h"

namespace care::compute::cuda {

// Timing of one weight upload: copy start/done on the copy stream, and the
// point at which the compute stream first needed the weight.
struct CopyRecord {
  cudaEvent_t start = nullptr, done = nullptr, need = nullptr;
  std::atomic<bool> need_recorded{false};
  ~CopyRecord();
};

// What Weight::storage points to on this backend: the device copy and the
// timing/readiness of its upload (ops wait on record->done).
struct DeviceWeight {
  std::shared_ptr<void> memory;  // freed on the compute stream
  std::shared_ptr<CopyRecord> record;
  cudaStream_t compute_stream = nullptr;
  // An unused weight may still be uploading: the compute stream (where the
  // memory is freed) first waits for the upload.
  ~DeviceWeight();
};

class Context : public std::enable_shared_from_this<Context> {
 public:
  // Opens device `ordinal`: Unavailable naming the driver's message when no
  // driver or device is usable, FailedPrecondition for a card older than
  // sm_90 (the plugin carries sm_90 code only).
  static absl::StatusOr<std::shared_ptr<Context>> Open(int ordinal);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  int ordinal() const { return ordinal_; }
  const std::string& label() const { return label_; }  // "cuda:0"
  const std::string& device_name() const { return device_name_; }
  cudaStream_t stream() const { return stream_; }
  cudaStream_t copy_stream() const { return copy_stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cusolverDnHandle_t cusolver() const { return cusolver_; }
  cusolverDnParams_t cusolver_params() const { return cusolver_params_; }

  // With $CARE_CUDA_SYNC_CHECK=1 (read at open), waits for the compute
  // stream after every op so that an asynchronous fault is reported by the
  // op that caused it (named with its shapes) instead of a later one. OK
  // and free otherwise.
  absl::Status SyncCheck(absl::string_view op, absl::string_view detail) const;
  bool sync_check() const { return sync_check_; }

  // Makes this device current on the calling thread.
  absl::Status Enter() const;

  // OK, or the error naming the device, op and detail (shapes):
  // ResourceExhausted for out-of-memory, Internal otherwise.
  absl::Status Check(cudaError_t err, absl::string_view op,
                     absl::string_view detail) const;
  absl::Status CheckBlas(cublasStatus_t st, absl::string_view op,
                         absl::string_view detail) const;
  absl::Status CheckSolver(cusolverStatus_t st, absl::string_view op,
                           absl::string_view detail) const;

  // bytes of device memory, stream-ordered on `stream` (allocation) and
  // freed on the compute stream after all work issued before the last
  // owner dropped it. ResourceExhausted "cuda:N: out of memory allocating
  // X MiB for <op>" when the pool cannot grow.
  absl::StatusOr<std::shared_ptr<void>> Allocate(size_t bytes,
                                                 absl::string_view op,
                                                 cudaStream_t stream);
  absl::StatusOr<std::shared_ptr<void>> Allocate(size_t bytes,
                                                 absl::string_view op) {
    return Allocate(bytes, op, stream_);
  }

  // Pinned staging for LoadWeight: two buffers used alternately; an event
  // per buffer tells when its last copy finished.
  static constexpr size_t kStagingBytes = 32 << 20;
  void* staging(int i) const { return staging_[i]; }
  cudaEvent_t staging_free(int i) const { return staging_free_[i]; }
  std::mutex& load_mutex() { return load_mutex_; }

  // Counters (stats.h).
  void AddCopy(std::shared_ptr<CopyRecord> record, int64_t bytes,
               double staging_ms);
  void AddFlop(double gemm, double attention);
  // Waits for both streams, folds finished copy records into the totals.
  absl::StatusOr<CareCudaStats> Stats();
  // device_bytes_peak restarts from the bytes in use now.
  void ResetPeak() { peak_.store(in_use_.load()); }

 private:
  explicit Context(int ordinal);
  absl::Status Init();
  // Folds finished copy records into totals_ (after a synchronization every
  // used record is finished; otherwise the events are queried).
  absl::Status FoldFinishedLocked(bool synchronized);

  int ordinal_;
  bool sync_check_ = false;
  std::string label_, device_name_;
  cudaStream_t stream_ = nullptr, copy_stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cusolverDnHandle_t cusolver_ = nullptr;
  cusolverDnParams_t cusolver_params_ = nullptr;
  void* staging_[2] = {nullptr, nullptr};
  cudaEvent_t staging_free_[2] = {nullptr, nullptr};
  std::mutex load_mutex_;
  int64_t total_bytes_ = 0;
  std::atomic<int64_t> in_use_{0}, peak_{0};

  std::mutex stats_mutex_;
  std::vector<std::shared_ptr<CopyRecord>> pending_;
  CareCudaStats totals_{};
};

// "[rows, cols]" for messages.
std::string ShapeOf(const Matrix& m);

}  // namespace care::compute::cuda

#endif  // CARE_COMPUTE_CUDA_CONTEXT_H_
