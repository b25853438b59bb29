// CpuBackend's dense float64 linear algebra: Eigen's self-adjoint solver and
// divide-and-conquer SVD.
#include <Eigen/Eigenvalues>
#include <Eigen/SVD>

#include "absl/strings/str_cat.h"
#include "care/compute/cpu_backend.h"

namespace care::compute::cpu {

absl::StatusOr<SymmetricEigenResult> CpuBackend::SymmetricEigen(
    const Eigen::MatrixXd& a) {
  if (a.rows() != a.cols()) {
    return absl::InvalidArgumentError(
        absl::StrCat("SymmetricEigen: matrix is [", a.rows(), ", ", a.cols(),
                     "], expected square"));
  }
  Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd> eig(a);
  if (eig.info() != Eigen::Success) {
    return absl::InternalError(absl::StrCat("cpu SymmetricEigen of a ",
                                            a.rows(), "x", a.cols(),
                                            " matrix did not converge"));
  }
  return SymmetricEigenResult{eig.eigenvalues(), eig.eigenvectors()};
}

absl::StatusOr<SvdResult> CpuBackend::Svd(const Eigen::MatrixXd& a,
                                          bool compute_u, bool compute_v) {
  unsigned int opts = 0;
  if (compute_u) opts |= Eigen::ComputeThinU;
  if (compute_v) opts |= Eigen::ComputeThinV;
  Eigen::BDCSVD<Eigen::MatrixXd> svd(a, opts);
  if (svd.info() != Eigen::Success) {
    return absl::InternalError(absl::StrCat(
        "cpu SVD of a ", a.rows(), "x", a.cols(), " matrix did not converge"));
  }
  SvdResult r;
  r.values = svd.singularValues();
  if (compute_u) r.u = svd.matrixU();
  if (compute_v) r.v = svd.matrixV();
  return r;
}

}  // namespace care::compute::cpu
