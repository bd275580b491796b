// Row-major Eigen views over caller-owned buffers: the CPU backend's only "tensor" type. Every
// activation is a (rows, cols) row-major block; the comment next to each buffer gives its shape.
#pragma once

#include <Eigen/Core>
#include <vector>

namespace pld::cpu {

template <class Scalar>
using MatrixR = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Scalar>
using MapR = Eigen::Map<MatrixR<Scalar>>;
template <class Scalar>
using ConstMapR = Eigen::Map<const MatrixR<Scalar>>;
template <class Scalar>
using RowVec = Eigen::Matrix<Scalar, 1, Eigen::Dynamic>;
template <class Scalar>
using MapRowVec = Eigen::Map<RowVec<Scalar>>;
template <class Scalar>
using ConstMapRowVec = Eigen::Map<const RowVec<Scalar>>;

// out[c] += sum over rows r of a[r, c] (* b[r, c] when b is given), rows added in order with a
// double accumulator per column. Not Eigen's colwise().sum(): that one reduces a packet of
// columns as a tree and the remaining columns linearly, and which columns fall in packets
// depends on the buffer's alignment, so the bits would depend on where memory happened to be
// allocated (a resumed run would drift from an uninterrupted one).
template <class Scalar>
void add_column_sums(const Scalar* a, const Scalar* b, int rows, int cols, Scalar* out) {
  std::vector<double> acc(static_cast<std::size_t>(cols), 0.0);
  for (int r = 0; r < rows; ++r) {
    const Scalar* ar = a + static_cast<std::ptrdiff_t>(r) * cols;
    if (b) {
      const Scalar* br = b + static_cast<std::ptrdiff_t>(r) * cols;
      for (int c = 0; c < cols; ++c) acc[static_cast<std::size_t>(c)] += static_cast<double>(ar[c] * br[c]);
    } else {
      for (int c = 0; c < cols; ++c) acc[static_cast<std::size_t>(c)] += static_cast<double>(ar[c]);
    }
  }
  for (int c = 0; c < cols; ++c) out[c] += static_cast<Scalar>(acc[static_cast<std::size_t>(c)]);
}

}  // namespace pld::cpu
