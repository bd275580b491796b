// Row-major Eigen views over caller-owned buffers: the CPU backend's only "tensor" type. Every
// activation is a (rows, cols) row-major block; the comment next to each buffer gives its shape.
#pragma once

#include <Eigen/Core>
#include <algorithm>
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
// Threads split the columns (64 at a time), never the rows, so every column is still summed in
// row order: the same bits for any thread count.
template <class Scalar>
void add_column_sums(const Scalar* a, const Scalar* b, int rows, int cols, Scalar* out) {
  constexpr int kBlock = 64;
  const int blocks = (cols + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (static_cast<long long>(rows) * cols > 65536)
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock, c1 = std::min(cols, c0 + kBlock);
    double acc[kBlock] = {};
    for (int r = 0; r < rows; ++r) {
      const Scalar* ar = a + static_cast<std::ptrdiff_t>(r) * cols;
      if (b) {
        const Scalar* br = b + static_cast<std::ptrdiff_t>(r) * cols;
        for (int c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(ar[c] * br[c]);
      } else {
        for (int c = c0; c < c1; ++c) acc[c - c0] += static_cast<double>(ar[c]);
      }
    }
    for (int c = c0; c < c1; ++c) out[c] += static_cast<Scalar>(acc[c - c0]);
  }
}

}  // namespace pld::cpu
