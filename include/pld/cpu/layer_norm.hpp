// LayerNorm over the last dimension: y = (x - mean) * rstd * gamma + beta. The forward saves
// mean and rstd per row (what the backward needs); dx is written, dgamma/dbeta accumulate.
#pragma once

#include <cmath>

#include "pld/cpu/eigen_maps.hpp"

namespace pld::cpu {

template <class Scalar>
void layer_norm_forward(const Scalar* x, const Scalar* gamma, const Scalar* beta, Scalar* y,
                        Scalar* mean, Scalar* rstd, int rows, int cols, double eps) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const Scalar* xr = x + static_cast<std::ptrdiff_t>(r) * cols;
    Scalar* yr = y + static_cast<std::ptrdiff_t>(r) * cols;
    // Two-pass mean and variance in double-or-better accumulation for stability.
    double m = 0.0;
    for (int c = 0; c < cols; ++c) m += static_cast<double>(xr[c]);
    m /= cols;
    double v = 0.0;
    for (int c = 0; c < cols; ++c) {
      const double d = static_cast<double>(xr[c]) - m;
      v += d * d;
    }
    v /= cols;  // biased variance, as PyTorch's LayerNorm
    const double rs = 1.0 / std::sqrt(v + eps);
    for (int c = 0; c < cols; ++c)
      yr[c] = static_cast<Scalar>((static_cast<double>(xr[c]) - m) * rs) * gamma[c] + beta[c];
    mean[r] = static_cast<Scalar>(m);
    rstd[r] = static_cast<Scalar>(rs);
  }
}

// With xhat = (x - mean) rstd and g = dy * gamma:
// dx = rstd (g - mean(g) - xhat mean(g xhat)), dgamma += sum_rows dy xhat, dbeta += sum_rows dy.
template <class Scalar>
void layer_norm_backward(const Scalar* dy, const Scalar* x, const Scalar* mean, const Scalar* rstd,
                         const Scalar* gamma, Scalar* dx, Scalar* dgamma, Scalar* dbeta, int rows,
                         int cols) {
  ConstMapR<Scalar> dY(dy, rows, cols);
  ConstMapR<Scalar> X(x, rows, cols);
  MatrixR<Scalar> xhat(rows, cols);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const Scalar m = mean[r], rs = rstd[r];
    double sum_g = 0.0, sum_gx = 0.0;
    for (int c = 0; c < cols; ++c) {
      const Scalar xh = (X(r, c) - m) * rs;
      xhat(r, c) = xh;
      const Scalar g = dY(r, c) * gamma[c];
      sum_g += static_cast<double>(g);
      sum_gx += static_cast<double>(g * xh);
    }
    const auto mg = static_cast<Scalar>(sum_g / cols), mgx = static_cast<Scalar>(sum_gx / cols);
    Scalar* dxr = dx + static_cast<std::ptrdiff_t>(r) * cols;
    for (int c = 0; c < cols; ++c) dxr[c] = rs * (dY(r, c) * gamma[c] - mg - xhat(r, c) * mgx);
  }
  add_column_sums<Scalar>(dy, xhat.data(), rows, cols, dgamma);
  add_column_sums<Scalar>(dy, nullptr, rows, cols, dbeta);
}

}  // namespace pld::cpu
