// Linear (dense) layer, PyTorch convention: weight (out, in), y = x W^T + b. Forward and backward
// side by side; dx is written, dW and db accumulate (+=) for micro-batching.
#pragma once

#include "pld/cpu/eigen_maps.hpp"

namespace pld::cpu {

template <class Scalar>
void linear_forward(const Scalar* x, const Scalar* w, const Scalar* b, Scalar* y, int rows, int in,
                    int out) {
  ConstMapR<Scalar> X(x, rows, in);   // (N, in)
  ConstMapR<Scalar> W(w, out, in);    // (out, in)
  MapR<Scalar> Y(y, rows, out);       // (N, out)
  Y.noalias() = X * W.transpose();
  if (b) Y.rowwise() += ConstMapRowVec<Scalar>(b, out);
}

// dx = dy W (written; skipped when dx is null), dW += dy^T x, db += colsum(dy).
template <class Scalar>
void linear_backward(const Scalar* dy, const Scalar* x, const Scalar* w, Scalar* dx, Scalar* dw,
                     Scalar* db, int rows, int in, int out) {
  ConstMapR<Scalar> dY(dy, rows, out);
  ConstMapR<Scalar> X(x, rows, in);
  ConstMapR<Scalar> W(w, out, in);
  if (dx) MapR<Scalar>(dx, rows, in).noalias() = dY * W;
  MapR<Scalar>(dw, out, in).noalias() += dY.transpose() * X;
  if (db) add_column_sums<Scalar>(dy, nullptr, rows, out, db);
}

}  // namespace pld::cpu
