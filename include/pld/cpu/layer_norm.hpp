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
#include "pld/cpu/reduce.hpp"

namespace pld::cpu {

template <class S>
void layer_norm_forward(const S* x, const S* gamma, const S* beta, S* y, arith_t<S>* mean, arith_t<S>* rstd, int rows, int cols,
                        double eps) {
  using A = arith_t<S>;
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const S* xr = x + static_cast<std::ptrdiff_t>(r) * cols;
    S* yr = y + static_cast<std::ptrdiff_t>(r) * cols;
    // Two-pass mean and variance in double, each sum in lanes (pld/cpu/reduce.hpp).
    const double m = detail::lane_sum<double>(cols, [&](int c) { return static_cast<double>(A(xr[c])); }) / cols;
    const double v = detail::lane_sum<double>(cols, [&](int c) {
                       const double d = static_cast<double>(A(xr[c])) - m;
                       return d * d;
                     }) /
                     cols;  // biased variance, as PyTorch's LayerNorm
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
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; ++r) {
    const std::ptrdiff_t o = static_cast<std::ptrdiff_t>(r) * cols;
    const A m = mean[r], rs = rstd[r];
    const S *xr = x + o, *dyr = dy + o;
    const auto g = [&](int c) { return A(dyr[c]) * A(gamma[c]); };
    const auto xhat = [&](int c) { return (A(xr[c]) - m) * rs; };
    const auto mg = static_cast<A>(detail::lane_sum<double>(cols, [&](int c) { return static_cast<double>(g(c)); }) / cols);
    const auto mgx = static_cast<A>(detail::lane_sum<double>(cols, [&](int c) { return static_cast<double>(g(c) * xhat(c)); }) / cols);
    S* dxr = dx + o;
    if (residual) {
      const S* rr = residual + o;
      for (int c = 0; c < cols; ++c) dxr[c] = S(rs * (g(c) - mg - xhat(c) * mgx) + A(rr[c]));
    } else {
      for (int c = 0; c < cols; ++c) dxr[c] = S(rs * (g(c) - mg - xhat(c) * mgx));
    }
  }
  // dgamma += sum_rows dy xhat, dbeta += sum_rows dy: in row order per column, in one pass
  // (xhat recomputed as above, the same float values, instead of stored).
  add_column_sums_by<A>(rows, cols, [&](int r, int c) {
    const std::ptrdiff_t o = static_cast<std::ptrdiff_t>(r) * cols + c;
    return A(dy[o]) * ((A(x[o]) - mean[r]) * rstd[r]);
  }, dgamma, [&](int r, int c) { return A(dy[static_cast<std::ptrdiff_t>(r) * cols + c]); }, dbeta);
}

}  // namespace pld::cpu
