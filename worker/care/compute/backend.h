// The compute backend: every piece of tensor math the forward engine and the
// calibration run, behind one interface with one implementation per device
// kind (cpu_backend.h: Eigen/OpenMP on the host; cuda/: the CUDA plugin
// loaded by registry.h). The model logic (engine/) exists once and calls
// only these ops, so a backend sees plain row-major fp32 activations, weights
// in its own format, and float64 second-moment accumulators. See
// docs/compute.md.
//
// Conventions for every op below:
// - Matrices are row-major fp32 [rows, cols] in the backend's memory
//   (host memory for cpu, device memory for cuda). Shapes are in the
//   comments; a shape mismatch is InvalidArgumentError naming the op and
//   both shapes (checked before any work is issued).
// - Outputs are allocated by the caller (Allocate) with the exact shape the
//   op writes; an op never resizes. "accumulate" means y += result, else
//   y = result (y's old contents ignored; NaNs in y do not leak through).
// - Unless an op says "may alias", outputs must not overlap inputs.
// - Ops are issued in order on one stream per backend; results are visible
//   to later ops without Synchronize(). Download() and the host-returning
//   ops (RouteTopK, ScoreFinish, GramDownload, the dense linear algebra)
//   wait for prior work. A device fault may surface at a later op; it is
//   then returned there (InternalError naming the device and the CUDA error).
// - Out of memory: ResourceExhaustedError naming the device and the bytes
//   asked for. Nothing is thrown.
// - Threading: a Backend is used by one thread at a time, with two
//   exceptions: LoadWeight may run on one other thread concurrently with ops
//   (the engine's prefetch of the next layer), and every op may be called
//   from inside ForEach's function on disjoint outputs.
#ifndef CARE_COMPUTE_BACKEND_H_
#define CARE_COMPUTE_BACKEND_H_

#include <Eigen/Core>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace care::compute {

enum class DeviceKind { kCpu, kCuda };

// Element types of the host tensors LoadWeight accepts (safetensors' F32,
// F16, BF16) and of Weight storage.
enum class DType { kF32, kF16, kBF16 };

// Bytes per element of `dtype` (4, 2, 2).
size_t DTypeBytes(DType dtype);

// A row-major fp32 [rows, cols] matrix in a backend's memory. Copies share
// the allocation (storage); views made by RowsView share it too, so a view
// keeps its parent's memory alive. data is 64-byte aligned for a fresh
// allocation (a view is aligned to its first row). Never mix matrices of
// two backends.
struct Matrix {
  float* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  std::shared_ptr<void> storage = nullptr;

  int64_t size() const { return rows * cols; }
  bool empty() const { return rows * cols == 0; }
};

// Rows [row0, row0 + n) of m as a matrix sharing m's memory (rows are
// contiguous, so a row range is itself a dense row-major matrix). The caller
// guarantees 0 <= row0 <= row0 + n <= m.rows.
Matrix RowsView(const Matrix& m, int64_t row0, int64_t n);

// A read-only host tensor to be turned into a Weight: row-major [rows, cols]
// elements of `dtype` at `data` (a 1-D tensor of n is [1, n]). data may be
// unaligned (it usually points into an mmapped safetensors file) and must
// stay valid until LoadWeight returns.
struct HostTensor {
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  const void* data = nullptr;
};

// A projection weight [out = rows, in = cols] (the HF layout) in the format
// the backend computes with: cpu holds fp32 in a buffer from its weight pool
// (returned to the pool when the last copy of the Weight is destroyed);
// cuda holds bf16 (or f16 / f32 as loaded) in device memory. `data` is
// opaque outside the backend that made it.
struct Weight {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;
  std::shared_ptr<void> storage = nullptr;
};

// A float64 second-moment accumulator of dimension D in backend memory:
// sum = Σ xᵀx over every row x added ([D, D], lower triangle authoritative),
// abs_sum = Σ |x| per channel ([D]), and the number of rows added.
struct Gram {
  int64_t dim = 0;
  int64_t tokens = 0;  // rows added so far (kept on the host)
  std::shared_ptr<void> storage = nullptr;
};

// A Gram brought back to the host.
struct GramHost {
  Eigen::MatrixXd sum;      // [D, D] Σ xᵀx, full symmetric (both triangles)
  Eigen::VectorXd abs_sum;  // [D] Σ |x|
  int64_t tokens = 0;
};

struct AttentionShape {
  int64_t windows = 0;
  int64_t seq_len = 0;
  int64_t heads = 0;     // n_h
  int64_t kv_heads = 0;  // g, divides n_h
  int64_t head_dim = 0;  // d_h of q and k
  // Multi-head latent attention (DeepSeek) has values narrower than the
  // query/key heads and its own softmax scale.
  int64_t v_head_dim = 0;  // d_v of v and out; 0: head_dim
  double scale = 0;        // softmax scale; 0: 1/sqrt(head_dim)

  int64_t value_dim() const { return v_head_dim > 0 ? v_head_dim : head_dim; }
};

// Options of ApplyRotary: which pairs rotate and in which direction.
struct RotaryOptions {
  // Pairs (2i, 2i+1) of each head (GPT-J / the DeepSeek-V3 export's q_pe and
  // k_pe rows) instead of HF rotate_half's (i, i + r/2).
  bool interleaved = false;
  // Rotation by −θ: the transpose of the rotation, so the backward of RoPE
  // (d x = Rᵀ d y) is ApplyRotary with inverse = true on the gradient.
  bool inverse = false;
};

// One Adam update (AdamUpdate), scalars computed on the host per step:
//   g' = grad_scale · g
//   m1 = beta1 · m1 + (1 − beta1) · g'
//   m2 = beta2 · m2 + (1 − beta2) · g'²
//   p -= lr · (m1 / correction1) / (sqrt(m2 / correction2) + eps)
// with correction1/2 = 1 − beta1/2^step (bias corrections), all in fp32.
struct AdamStep {
  double lr = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double correction1 = 1, correction2 = 1;
  double grad_scale = 1;
};

// Column blocks copied between two matrices with the same rows: for every
// group i < groups and row r,
//   dst[r, dst_col0 + i·dst_stride + j] = src[r, src_col0 + i·src_stride + j]
// for j < width. src_stride 0 repeats one block into every group (DeepSeek's
// shared k_pe into each head). Blocks must lie inside their matrices and the
// destination blocks must not overlap.
struct ColumnBlocks {
  int64_t groups = 1;
  int64_t width = 0;
  int64_t src_col0 = 0;
  int64_t src_stride = 0;
  int64_t dst_col0 = 0;
  int64_t dst_stride = 0;
};

// DeepSeek-V3's router (transformers' DeepseekV3TopkRouter): per token, the
// scores s = sigmoid(logit) of E experts; selection uses s + bias; the E
// experts form `groups` groups of E/groups (>= 2), each scored by the sum of
// its two highest corrected scores; the `topk_groups` best groups stay and
// the other groups' experts compete with a corrected score of 0 (as
// transformers' masked_fill(0.0)); the k highest corrected scores win (the
// lower index on ties). Weights are their s (not corrected), divided by
// (their sum + 1e-20) when renormalize, times `scale`.
struct GroupedTopK {
  int64_t k = 1;
  int64_t groups = 1;
  int64_t topk_groups = 1;
  bool renormalize = false;
  double scale = 1.0;  // routed_scaling_factor
};

// Mixture-of-experts routing of T tokens to k of E experts, on the host.
struct Routing {
  int64_t tokens = 0;
  int64_t k = 0;
  std::vector<int32_t> experts;  // [T * k], token t's choices at t*k..t*k+k-1
  std::vector<float> weights;    // [T * k], the routing weights
};

// Running per-row log-sum-exp over vocabulary chunks (scoring), in backend
// memory: for row s, max m_s (fp32), Σ exp(logit - m_s) (fp64) and the
// target's logit (fp64). Made by ScoreBegin.
struct ScoreState {
  int64_t rows = 0;
  std::shared_ptr<void> storage = nullptr;
};

// Results of the dense float64 linear algebra (host in, host out).
struct SymmetricEigenResult {
  Eigen::VectorXd values;   // [n] ascending
  Eigen::MatrixXd vectors;  // [n, n] column i belongs to values[i]
};
struct SvdResult {
  Eigen::VectorXd values;  // [min(m, n)] descending, >= 0
  Eigen::MatrixXd u;       // [m, min(m, n)] thin; empty unless asked for
  Eigen::MatrixXd v;       // [n, min(m, n)] thin; empty unless asked for
};

class Backend {
 public:
  virtual ~Backend() = default;

  // ---- identity
  // "cpu", or "cuda:0 (NVIDIA H100 80GB HBM3)".
  virtual std::string name() const = 0;
  virtual DeviceKind kind() const = 0;

  // ---- memory
  // An uninitialized [rows, cols] matrix (rows, cols >= 0; 0 elements give
  // an empty matrix with data == nullptr).
  virtual absl::StatusOr<Matrix> Allocate(int64_t rows, int64_t cols) = 0;
  // A [rows, cols] matrix holding host[0 .. rows*cols) (row-major).
  virtual absl::StatusOr<Matrix> Upload(const float* host, int64_t rows,
                                        int64_t cols) = 0;
  // Copies m to host[0 .. m.size()) (row-major); waits for prior work.
  virtual absl::Status Download(const Matrix& m, float* host) = 0;
  // dst = src (same shape; may not overlap).
  virtual absl::Status Copy(const Matrix& src, Matrix* dst) = 0;
  // Copies column blocks (ColumnBlocks above); src and dst have the same
  // rows and may not overlap.
  virtual absl::Status CopyColumns(const Matrix& src, const ColumnBlocks& b,
                                   Matrix* dst) = 0;
  // m = 0.
  virtual absl::Status SetZero(Matrix* m) = 0;
  // A Weight of t (converted to the backend's format). InvalidArgument for
  // rows or cols < 1 or a null data pointer. May run concurrently with ops
  // from one other thread (see the threading note above); on cuda the copy
  // goes through pinned staging on a copy stream and the Weight is ready for
  // every op issued after LoadWeight returns.
  virtual absl::StatusOr<Weight> LoadWeight(const HostTensor& t) = 0;
  // Waits until all issued work is done; returns a pending device error.
  virtual absl::Status Synchronize() = 0;
  // Runs fn(0) .. fn(n-1), possibly concurrently (cpu: OpenMP, one index at
  // a time per thread, dynamic schedule, and every op called inside runs
  // single-threaded; cuda: in order). fn may call any op as long as
  // concurrent calls write disjoint outputs. Returns the error of the lowest
  // failing index (all indices still run).
  virtual absl::Status ForEach(
      int64_t n, const std::function<absl::Status(int64_t)>& fn) = 0;

  // ---- GEMM (cpu: fp32 Eigen; cuda: bf16/tf32 tensor cores, fp32 accum)
  // y [n, out] (+)= x [n, in] · wᵀ (w: [out, in]) (+ bias [1, out] when
  // bias != nullptr, added once, also when accumulating).
  virtual absl::Status Linear(const Matrix& x, const Weight& w,
                              const Matrix* bias, Matrix* y,
                              bool accumulate) = 0;
  // c (+)= a · b (a [n, k]; b [k, m], or b [m, k] used as bᵀ when
  // transpose_b); c [n, m]. For activation × activation products.
  virtual absl::Status MatMul(const Matrix& a, const Matrix& b,
                              bool transpose_b, Matrix* c, bool accumulate) = 0;
  // c (+)= aᵀ · b (a [k, n], b [k, m], c [n, m]): the weight gradients of a
  // training step (Σ over the rows k of activation × output gradient).
  // cpu: fp32 Eigen; cuda: cublasSgemm, fp32, no TF32.
  virtual absl::Status MatMulTransposeA(const Matrix& a, const Matrix& b,
                                        Matrix* c, bool accumulate) = 0;

  // ---- elementwise and norms
  // y [rows, n] = x / sqrt(mean(x²) + eps) · weight, row-wise; weight
  // [1, n]; the mean of squares is summed in float64. y may alias x (the
  // same data pointer), not partially overlap it.
  virtual absl::Status RmsNorm(const Matrix& x, const Matrix& weight,
                               double eps, Matrix* y) = 0;
  // In place on x [rows, groups * width], the same norm applied to each
  // `width`-column group (Qwen3's per-head q_norm / k_norm); weight
  // [1, width]; x.cols must be a multiple of width.
  virtual absl::Status RmsNormGroups(const Matrix& weight, double eps,
                                     int64_t width, Matrix* x) = 0;
  // Rotary embedding in place, HF rotate_half convention. cos, sin:
  // [seq_len, r/2] with r the rotary width (even, <= head_dim), already
  // scaled by the attention factor. x: [rows, heads * head_dim]; the position
  // of row t is t mod seq_len. In each head, for i < r/2:
  //   a = x[i], b = x[i + r/2];
  //   x[i] = a·cos[p][i] - b·sin[p][i]; x[i + r/2] = b·cos[p][i] + a·sin[p][i]
  // and entries r .. head_dim-1 pass through.
  virtual absl::Status ApplyRope(const Matrix& cos, const Matrix& sin,
                                 int64_t head_dim, Matrix* x) = 0;
  // gate = silu(gate) · up = gate / (1 + exp(-gate)) · up, elementwise
  // (same shape).
  virtual absl::Status SiluMul(const Matrix& up, Matrix* gate) = 0;
  // y += x (same shape).
  virtual absl::Status Add(const Matrix& x, Matrix* y) = 0;
  // y.row(i) += b for every row; b [1, y.cols].
  virtual absl::Status AddRow(const Matrix& b, Matrix* y) = 0;
  // y = alpha · x + beta · y elementwise (same shape; fp32). beta == 0
  // ignores y's old contents (NaNs do not leak through). y may alias x.
  virtual absl::Status Axpby(double alpha, const Matrix& x, double beta,
                             Matrix* y) = 0;
  // Σ (a − b)² over all elements (same shape), summed in float64, on the
  // host (waits for prior work). The loss of a training step.
  virtual absl::StatusOr<double> SquaredDistance(const Matrix& a,
                                                 const Matrix& b) = 0;
  // Rotary embedding in place like ApplyRope (same cos/sin tables, head
  // layout and positions t mod seq_len), with a choice of pairs and
  // direction (RotaryOptions). interleaved: for i < r/2 in each head,
  //   a = x[2i], b = x[2i+1]; x[2i] = a·c − b·s; x[2i+1] = b·c + a·s
  // (s = sin[p][i], or −sin[p][i] when inverse). Entries r .. head_dim-1
  // pass through.
  virtual absl::Status ApplyRotary(const Matrix& cos, const Matrix& sin,
                                   int64_t head_dim, const RotaryOptions& o,
                                   Matrix* x) = 0;
  // The adjoint of CopyColumns: for every group i < b.groups in order and
  // row r, dst[r, dst_col0 + i·dst_stride + j] += src[r, src_col0 +
  // i·src_stride + j] (j < width). dst_stride 0 sums every group's block
  // into one (the gradient of a block broadcast with src_stride 0). Blocks
  // must lie inside their matrices; src and dst may not overlap.
  virtual absl::Status AddColumns(const Matrix& src, const ColumnBlocks& b,
                                  Matrix* dst) = 0;

  // ---- attention
  // Causal GQA self-attention per window and head, after RoPE:
  // q, k [W*T, n_h*d_h], [W*T, g*d_h]; v [W*T, g*d_v]; out [W*T, n_h*d_v] =
  // softmax(q kᵀ · scale + causal mask) v, with d_v = shape.value_dim() and
  // scale = shape.scale (default 1/sqrt(d_h)). Query head h reads KV head
  // h / (n_h / g); rows of window w are w*T .. w*T+T-1 and attend within
  // their window only.
  // cpu: exact softmax per 128-query block; cuda: flash-style tiles with an
  // online softmax (memory O(tile), so T = 4096 fits).
  virtual absl::Status CausalAttention(const AttentionShape& shape,
                                       const Matrix& q, const Matrix& k,
                                       const Matrix& v, Matrix* out) = 0;
  // The backward of CausalAttention: given its inputs q, k, v, its output
  // out and the gradient d_out [W*T, n_h*d_v] of a loss in out, writes
  // dq [W*T, n_h*d_h], dk [W*T, g*d_h] and dv [W*T, g*d_v] (dk/dv summed
  // over the query heads of each KV head). The probabilities are recomputed
  // (nothing is kept from the forward): with P = softmax(q kᵀ · scale +
  // mask) and D_i = Σ_e d_out[i, e]·out[i, e] (= Σ_j P_ij dP_ij),
  //   dv = Pᵀ d_out, dP = d_out vᵀ, dS = P ⊙ (dP − D) · scale,
  //   dq = dS k, dk = dSᵀ q.
  // cpu: per (window, KV head), exact softmax per 128-query block like the
  // forward; cuda: one block per (query row | key row, head, window), no
  // atomics, so the result does not depend on the schedule.
  virtual absl::Status CausalAttentionBackward(const AttentionShape& shape,
                                               const Matrix& q, const Matrix& k,
                                               const Matrix& v,
                                               const Matrix& out,
                                               const Matrix& d_out, Matrix* dq,
                                               Matrix* dk, Matrix* dv) = 0;

  // ---- training (healing, convert/mla_export/heal_backend.h)
  // Adam on one parameter block, elementwise (AdamStep above): param, m1,
  // m2 and grad have the same shape; m1 and m2 are the moments, kept in the
  // backend's memory by the caller (zero at step 1).
  virtual absl::Status AdamUpdate(const Matrix& grad, const AdamStep& step,
                                  Matrix* param, Matrix* m1, Matrix* m2) = 0;

  // ---- mixture of experts
  // Softmax over each row of logits [T, E] (in float64, max-subtracted),
  // the top k experts per token, highest probability first, the lower index
  // winning ties; weights are the probabilities, divided by their sum over
  // the k kept when renormalize (Qwen3-MoE norm_topk_prob). 1 <= k <= E.
  // The result is on the host.
  virtual absl::StatusOr<Routing> RouteTopK(const Matrix& logits, int64_t k,
                                            bool renormalize) = 0;
  // GroupedTopK routing (DeepSeek-V3, above) of logits [T, E] with the
  // selection bias [1, E], in float64 from the fp32 inputs; the k experts
  // per token highest corrected score first. The result is on the host.
  virtual absl::StatusOr<Routing> RouteGroupedTopK(const Matrix& logits,
                                                   const Matrix& bias,
                                                   const GroupedTopK& r) = 0;
  // out.row(i) = x.row(rows[i]) for i < rows.size(); out [rows.size(),
  // x.cols]. Every id must be in [0, x.rows) (InvalidArgument otherwise).
  virtual absl::Status GatherRows(const Matrix& x,
                                  const std::vector<int64_t>& rows,
                                  Matrix* out) = 0;
  // out.row(rows[i]) (+)= scale[i] · x.row(i) for i < rows.size() (scale
  // empty means 1). x [rows.size(), C], out [*, C]. The ids must be distinct
  // (each output row written once per call, so the result does not depend
  // on the order of execution) and in [0, out.rows).
  virtual absl::Status ScatterRows(const Matrix& x,
                                   const std::vector<int64_t>& rows,
                                   const std::vector<float>& scale, Matrix* out,
                                   bool accumulate) = 0;
  // y.row(t) = Σ_{j<k} x.row(t*k + j), summed in order j = 0, 1, .. (fp32,
  // left to right); x [T*k, C], y [T, C]. With ScatterRows this combines
  // each token's expert outputs in a fixed order whatever the schedule.
  virtual absl::Status SumRowGroups(const Matrix& x, int64_t k, Matrix* y) = 0;

  // ---- scoring (log-softmax over the vocabulary in chunks)
  // A state for targets.size() rows; targets[s] is row s's target id
  // (>= 0; the caller drops unscored rows beforehand).
  virtual absl::StatusOr<ScoreState> ScoreBegin(
      const std::vector<int32_t>& targets) = 0;
  // Folds logits [n, nv] (rows row0 .. row0+n-1 of the state, vocabulary
  // entries v0 .. v0+nv-1) into the running state: m' = max(m, max_j l_j),
  // sum' = sum·exp(m - m') + Σ_j exp(l_j - m') (exp in fp32, summed in
  // fp64 in order j), and the target's logit when it falls in the chunk.
  virtual absl::Status ScoreChunk(const Matrix& logits, int64_t row0,
                                  int64_t v0, ScoreState* state) = 0;
  // Per row s, NLL_s = m_s + log(sum_s) - target_logit_s, on the host.
  virtual absl::StatusOr<std::vector<double>> ScoreFinish(
      const ScoreState& state) = 0;

  // ---- calibration statistics
  // A zeroed accumulator of dimension dim >= 1.
  virtual absl::StatusOr<Gram> NewGram(int64_t dim) = 0;
  // Adds the rows of x [n, D] to g: sum += xᵀx, abs_sum += |x|, tokens += n.
  // Products are formed in fp32 over blocks of at most 256 rows and each
  // block's partial sum is added to the fp64 total (relative error of a
  // block ~256·2⁻²⁴ worst case). InvalidArgument when x.cols != D or x holds
  // a NaN/inf (nothing is added then).
  virtual absl::Status GramAdd(const Matrix& x, Gram* g) = 0;
  // The accumulator on the host (sum made fully symmetric).
  virtual absl::StatusOr<GramHost> GramDownload(const Gram& g) = 0;

  // ---- dense float64 linear algebra (host in, host out)
  // Eigen-decomposition of the symmetric a [n, n] (only the lower triangle
  // is read). InternalError when the solver does not converge.
  virtual absl::StatusOr<SymmetricEigenResult> SymmetricEigen(
      const Eigen::MatrixXd& a) = 0;
  // Thin SVD of a [m, n]; u / v computed only when asked for.
  virtual absl::StatusOr<SvdResult> Svd(const Eigen::MatrixXd& a,
                                        bool compute_u, bool compute_v) = 0;
};

// Shape checks shared by the backends: InvalidArgument "<op>: <what> is
// [r, c], expected [er, ec]" when m is not [rows, cols].
absl::Status CheckShape(const char* op, const char* what, const Matrix& m,
                        int64_t rows, int64_t cols);

// CopyColumns' argument checks (rows, bounds, non-negative sizes).
absl::Status CheckColumnBlocks(const Matrix& src, const ColumnBlocks& b,
                               const Matrix& dst);

// RouteGroupedTopK on host rows: logits [T, E] and bias [E] row-major. The
// one implementation of the routing rule; backends check shapes, bring the
// logits to the host if needed and call it.
absl::StatusOr<Routing> GroupedTopKOnHost(const float* logits, int64_t T,
                                          int64_t E, const float* bias,
                                          const GroupedTopK& r);

}  // namespace care::compute

#endif  // CARE_COMPUTE_BACKEND_H_
