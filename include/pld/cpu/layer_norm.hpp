// LayerNorm over the last dimension: y = (x - mean) * rstd * gamma + beta. The forward saves
// mean and rstd per row (what the backward needs); dx is written, dgamma/dbeta accumulate.
// Storage S is float, double or bf16; statistics, gradients of gamma/beta and the arithmetic are
// in arith_t<S> (float for bf16: a bf16 LayerNorm is the float one on the same values, each
// stored value rounded once).
#pragma once

#include <cmath>
#include <vector>

#include "pld/cpu/bf16.hpp"
#include "pld/cpu/eigen_maps.hpp"

namespace pld::cpu {

template <class S>
void layer_norm_forward(const S* x, const S* gamma, const S* beta, S* y, arith_t<S>* mean, arith_t<S>* rstd, int rows, int cols,
                        double eps) {
  using A = arith_t<S>;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const S* xr = x + static_cast<std::ptrdiff_t>(r) * cols;
    S* yr = y + static_cast<std::ptrdiff_t>(r) * cols;
    // Two-pass mean and variance in double-or-better accumulation for stability.
    double m = 0.0;
    for (int c = 0; c < cols; ++c) m += static_cast<double>(A(xr[c]));
    m /= cols;
    double v = 0.0;
    for (int c = 0; c < cols; ++c) {
      const double d = static_cast<double>(A(xr[c])) - m;
      v += d * d;
    }
    v /= cols;  // biased variance, as PyTorch's LayerNorm
    const double rs = 1.0 / std::sqrt(v + eps);
    for (int c = 0; c < cols; ++c)
      yr[c] = S(static_cast<A>((static_cast<double>(A(xr[c])) - m) * rs) * A(gamma[c]) + A(beta[c]));
    mean[r] = static_cast<A>(m);
    rstd[r] = static_cast<A>(rs);
  }
}

// With xhat = (x - mean) rstd and g = dy * gamma:
// dx = rstd (g - mean(g) - xhat mean(g xhat)) [+ residual], dgamma += sum_rows dy xhat,
// dbeta += sum_rows dy. residual (optional, the same shape as dx) is added before dx is stored.
template <class S>
void layer_norm_backward(const S* dy, const S* x, const arith_t<S>* mean, const arith_t<S>* rstd, const S* gamma, S* dx,
                         arith_t<S>* dgamma, arith_t<S>* dbeta, int rows, int cols, const S* residual = nullptr) {
  using A = arith_t<S>;
  MatrixR<A> xhat(rows, cols);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const std::ptrdiff_t o = static_cast<std::ptrdiff_t>(r) * cols;
    const A m = mean[r], rs = rstd[r];
    A* xh_r = xhat.data() + o;
    double sum_g = 0.0, sum_gx = 0.0;
    for (int c = 0; c < cols; ++c) {
      const A xh = (A(x[o + c]) - m) * rs;
      xh_r[c] = xh;
      const A g = A(dy[o + c]) * A(gamma[c]);
      sum_g += static_cast<double>(g);
      sum_gx += static_cast<double>(g * xh);
    }
    const auto mg = static_cast<A>(sum_g / cols), mgx = static_cast<A>(sum_gx / cols);
    S* dxr = dx + o;
    if (residual) {
      for (int c = 0; c < cols; ++c) dxr[c] = S(rs * (A(dy[o + c]) * A(gamma[c]) - mg - xh_r[c] * mgx) + A(residual[o + c]));
    } else {
      for (int c = 0; c < cols; ++c) dxr[c] = S(rs * (A(dy[o + c]) * A(gamma[c]) - mg - xh_r[c] * mgx));
    }
  }
  add_column_sums<S, A>(dy, xhat.data(), rows, cols, dgamma);
  add_column_sums<S>(dy, nullptr, rows, cols, dbeta);
}

}  // namespace pld::cpu
