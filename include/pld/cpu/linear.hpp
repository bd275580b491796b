// Linear (dense) layer, PyTorch convention: weight (out, in), y = x W^T + b. Forward and backward
// side by side; dx is written, dW and db accumulate (+=) for micro-batching. The products run on
// the caller's Gemm (oneDNN or Eigen, fp32 or bf16 operands: gemm.hpp).
#pragma once

#include "pld/cpu/eigen_maps.hpp"
#include "pld/cpu/gemm.hpp"

#include <type_traits>

namespace pld::cpu {

// y (rows, out) = x (rows, in) W^T (+ b).
template <class Scalar>
void linear_forward(Gemm& gemm, const Scalar* x, const Scalar* w, const Scalar* b, Scalar* y, int rows, int in, int out) {
  gemm.run<Scalar>(GemmShape::plain(rows, out, in, false, true), x, w, y, Scalar(1), false, b);
}

// dx = dy W (written; skipped when dx is null), dW += dy^T x, db += colsum(dy).
template <class Scalar>
void linear_backward(Gemm& gemm, const Scalar* dy, const Scalar* x, const Scalar* w, Scalar* dx, Scalar* dw, Scalar* db, int rows,
                     int in, int out) {
  // dy feeds both products: with bf16 operands it is converted once (gemm.hpp, stable operands).
  if constexpr (std::is_same_v<Scalar, float>) gemm.keep_converted(dy);
  if (dx) gemm.run<Scalar>(GemmShape::plain(rows, in, out, false, false), dy, w, dx);
  gemm.run<Scalar>(GemmShape::plain(out, in, rows, true, false), dy, x, dw, Scalar(1), /*accumulate=*/true);
  if constexpr (std::is_same_v<Scalar, float>) gemm.release_converted(dy);
  if (db) add_column_sums<Scalar>(dy, nullptr, rows, out, db);
}

}  // namespace pld::cpu
