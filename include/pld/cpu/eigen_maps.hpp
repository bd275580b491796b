// Row-major Eigen views over caller-owned buffers: the CPU backend's only "tensor" type. Every
// activation is a (rows, cols) row-major block; the comment next to each buffer gives its shape.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <cstddef>
#include <type_traits>
#include <vector>

#include "pld/cpu/bf16.hpp"
#if defined(_OPENMP)
#include <omp.h>
#endif

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

namespace detail {
template <class T>
struct same_type {
  using type = T;
};
}  // namespace detail

// Column sums. add_column_sums_by: out[c] += sum over rows r of f(r, c), and, when out2 is given,
// out2[c] += sum_r f2(r, c) in the same pass (LayerNorm's dgamma and dbeta); f returns arith_t of
// the storage. add_column_sums (below): the terms a[r, c] (* b[r, c] when b is given).
// Rows are added in order with a double accumulator per column. Not Eigen's colwise().sum():
// that one reduces a packet of columns as a tree and the remaining columns linearly, and which
// columns fall in packets depends on the buffer's alignment, so the bits would depend on where
// memory happened to be allocated (a resumed run would drift from an uninterrupted one).
// The rows are read in memory order, a chunk of 64-512 columns at a time (its accumulators stay
// in L1; each row's slice is read contiguously, so the prefetcher streams it — walking 64-column
// blocks down the rows cost a TLB miss per row). Threads split the chunks, never the rows, so
// every column is still summed in row order: the same bits for any thread count and chunk width.
// No `omp simd` on the column loops: they vectorize without it, and 1.5x slower with it.
template <class A, class F, class F2 = std::nullptr_t>
void add_column_sums_by(int rows, int cols, F&& f, A* out, F2&& f2 = nullptr, A* out2 = nullptr) {
  constexpr bool kTwo = !std::is_same<std::decay_t<F2>, std::nullptr_t>::value;
  constexpr int kChunk = 512;
  const bool parallel = static_cast<long long>(rows) * cols > 65536;
#if defined(_OPENMP)
  const int threads = parallel ? omp_get_max_threads() : 1;
#else
  const int threads = 1;
#endif
  // One chunk per thread where that leaves at least 64 columns each, 16-column multiples.
  const int width = std::clamp(((cols + threads - 1) / threads + 15) / 16 * 16, 64, kChunk);
  const int chunks = (cols + width - 1) / width;
#pragma omp parallel for schedule(static) if (parallel && chunks > 1)
  for (int ch = 0; ch < chunks; ++ch) {
    const int c0 = ch * width, w = std::min(cols - c0, width);
    double acc[kChunk], acc2[kTwo ? kChunk : 1];
    for (int c = 0; c < w; ++c) acc[c] = 0.0;
    if constexpr (kTwo)
      for (int c = 0; c < w; ++c) acc2[c] = 0.0;
    for (int r = 0; r < rows; ++r) {
      for (int c = 0; c < w; ++c) acc[c] += static_cast<double>(f(r, c0 + c));
      if constexpr (kTwo)
        for (int c = 0; c < w; ++c) acc2[c] += static_cast<double>(f2(r, c0 + c));
    }
    for (int c = 0; c < w; ++c) out[c0 + c] += static_cast<A>(acc[c]);
    if constexpr (kTwo)
      for (int c = 0; c < w; ++c) out2[c0 + c] += static_cast<A>(acc2[c]);
  }
}

// a is float, double or bf16, b (optional) the same or arith_t of it; each product is formed in
// arith_t<Scalar> (a bf16 a is widened where it is read).
template <class Scalar, class B = Scalar>  // B is never deduced: b may be nullptr
void add_column_sums(const Scalar* a, const typename detail::same_type<B>::type* b, int rows, int cols, arith_t<Scalar>* out) {
  using A = arith_t<Scalar>;
  const auto at = [cols](int r, int c) { return static_cast<std::ptrdiff_t>(r) * cols + c; };
  if (b) add_column_sums_by<A>(rows, cols, [&](int r, int c) { return A(a[at(r, c)]) * A(b[at(r, c)]); }, out);
  else add_column_sums_by<A>(rows, cols, [&](int r, int c) { return A(a[at(r, c)]); }, out);
}

}  // namespace pld::cpu
