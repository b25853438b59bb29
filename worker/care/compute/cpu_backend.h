// The CPU backend: fp32 Eigen GEMMs and OpenMP loops on host memory, the
// numerics the engine had before the backend split (tests compare logits to
// independent references at 1.5e-5). Buffers come from a BufferPool so that
// repeated layers and passes reuse warm memory. Internal to care_compute;
// users call OpenBackend("cpu") (registry.h) or MakeCpuBackend().
#ifndef CARE_COMPUTE_CPU_BACKEND_H_
#define CARE_COMPUTE_CPU_BACKEND_H_

#include <Eigen/Core>
#include <cstddef>
#include <memory>
#include <string>

#include "care/compute/backend.h"
#include "care/compute/buffer_pool.h"

namespace care::compute {

struct CpuBackendOptions {
  // Idle pooled bytes kept for reuse; beyond it returned buffers are freed.
  // 1 GiB holds a Llama-3.1-8B layer's fp32 weights (0.87 GB), so each layer
  // converts into the buffers the previous one released.
  size_t max_idle_bytes = size_t{1} << 30;
};

std::unique_ptr<Backend> MakeCpuBackend(const CpuBackendOptions& options = {});

namespace cpu {

using MatrixRM =
    Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatrixRM>;
using ConstMapRM = Eigen::Map<const MatrixRM>;
using ConstMapRow = Eigen::Map<const Eigen::RowVectorXf>;

// Below this many elements loops stay serial: an OpenMP region costs
// microseconds, more than small loops take.
inline constexpr int64_t kParallelMin = int64_t{1} << 16;

inline MapRM Map(Matrix* m) { return MapRM(m->data, m->rows, m->cols); }
inline ConstMapRM Map(const Matrix& m) {
  return ConstMapRM(m.data, m.rows, m.cols);
}
inline ConstMapRM Map(const Weight& w) {
  return ConstMapRM(static_cast<const float*>(w.data), w.rows, w.cols);
}

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(const CpuBackendOptions& options);

  std::string name() const override { return "cpu"; }
  DeviceKind kind() const override { return DeviceKind::kCpu; }
  const BufferPool& pool() const { return *pool_; }

  absl::StatusOr<Matrix> Allocate(int64_t rows, int64_t cols) override;
  absl::StatusOr<Matrix> Upload(const float* host, int64_t rows,
                                int64_t cols) override;
  absl::Status Download(const Matrix& m, float* host) override;
  absl::Status Copy(const Matrix& src, Matrix* dst) override;
  absl::Status CopyColumns(const Matrix& src, const ColumnBlocks& b,
                           Matrix* dst) override;
  absl::Status SetZero(Matrix* m) override;
  absl::StatusOr<Weight> LoadWeight(const HostTensor& t) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }
  absl::Status ForEach(int64_t n,
                       const std::function<absl::Status(int64_t)>& fn) override;

  absl::Status Linear(const Matrix& x, const Weight& w, const Matrix* bias,
                      Matrix* y, bool accumulate) override;
  absl::Status MatMul(const Matrix& a, const Matrix& b, bool transpose_b,
                      Matrix* c, bool accumulate) override;
  absl::Status MatMulTransposeA(const Matrix& a, const Matrix& b, Matrix* c,
                                bool accumulate) override;

  absl::Status RmsNorm(const Matrix& x, const Matrix& weight, double eps,
                       Matrix* y) override;
  absl::Status RmsNormGroups(const Matrix& weight, double eps, int64_t width,
                             Matrix* x) override;
  absl::Status ApplyRope(const Matrix& cos, const Matrix& sin, int64_t head_dim,
                         Matrix* x) override;
  absl::Status SiluMul(const Matrix& up, Matrix* gate) override;
  absl::Status Add(const Matrix& x, Matrix* y) override;
  absl::Status AddRow(const Matrix& b, Matrix* y) override;
  absl::Status Axpby(double alpha, const Matrix& x, double beta,
                     Matrix* y) override;
  absl::StatusOr<double> SquaredDistance(const Matrix& a,
                                         const Matrix& b) override;
  absl::Status ApplyRotary(const Matrix& cos, const Matrix& sin,
                           int64_t head_dim, const RotaryOptions& o,
                           Matrix* x) override;
  absl::Status AddColumns(const Matrix& src, const ColumnBlocks& b,
                          Matrix* dst) override;

  absl::Status CausalAttention(const AttentionShape& shape, const Matrix& q,
                               const Matrix& k, const Matrix& v,
                               Matrix* out) override;
  absl::Status CausalAttentionBackward(const AttentionShape& shape,
                                       const Matrix& q, const Matrix& k,
                                       const Matrix& v, const Matrix& out,
                                       const Matrix& d_out, Matrix* dq,
                                       Matrix* dk, Matrix* dv) override;
  absl::Status AdamUpdate(const Matrix& grad, const AdamStep& step,
                          Matrix* param, Matrix* m1, Matrix* m2) override;

  absl::StatusOr<Routing> RouteTopK(const Matrix& logits, int64_t k,
                                    bool renormalize) override;
  absl::StatusOr<Routing> RouteGroupedTopK(const Matrix& logits,
                                           const Matrix& bias,
                                           const GroupedTopK& r) override;
  absl::Status GatherRows(const Matrix& x, const std::vector<int64_t>& rows,
                          Matrix* out) override;
  absl::Status ScatterRows(const Matrix& x, const std::vector<int64_t>& rows,
                           const std::vector<float>& scale, Matrix* out,
                           bool accumulate) override;
  absl::Status SumRowGroups(const Matrix& x, int64_t k, Matrix* y) override;

  absl::StatusOr<ScoreState> ScoreBegin(
      const std::vector<int32_t>& targets) override;
  absl::Status ScoreChunk(const Matrix& logits, int64_t row0, int64_t v0,
                          ScoreState* state) override;
  absl::StatusOr<std::vector<double>> ScoreFinish(
      const ScoreState& state) override;

  absl::StatusOr<Gram> NewGram(int64_t dim) override;
  absl::Status GramAdd(const Matrix& x, Gram* g) override;
  absl::StatusOr<GramHost> GramDownload(const Gram& g) override;

  absl::StatusOr<SymmetricEigenResult> SymmetricEigen(
      const Eigen::MatrixXd& a) override;
  absl::StatusOr<SvdResult> Svd(const Eigen::MatrixXd& a, bool compute_u,
                                bool compute_v) override;

 private:
  std::shared_ptr<BufferPool> pool_;
};

}  // namespace cpu
}  // namespace care::compute

#endif  // CARE_COMPUTE_CPU_BACKEND_H_
