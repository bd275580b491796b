// GELU, exact erf form x Phi(x) (BERT, PyTorch's default) or the tanh approximation
// (approximate='tanh'). The backward takes the pre-activation (gelu_backward) or the derivative
// that gelu_forward_with_derivative saved in its place (gelu_backward_given). In float the erf
// form uses fast::erf / fast::exp (fast_math.hpp: the loops vectorize; error <= 6e-7 absolute in
// erf); in double the C library's. Storage S is float, double or bf16 (arithmetic in arith_t<S>:
// float for bf16, so a bf16 pass gives the float pass's value rounded once).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <type_traits>

#include "pld/cpu/bf16.hpp"
#include "pld/cpu/fast_math.hpp"
#include "pld/layer/layer_config.hpp"

namespace pld::cpu {

using pld::GeluForm;

namespace detail {
template <class Scalar>
inline Scalar gelu_erf(Scalar v) {
  if constexpr (std::is_same_v<Scalar, float>) return fast::erf(v);
  else return std::erf(v);
}
}  // namespace detail

namespace detail {
// GELU and its derivative at v, erf form: e^{-v^2/2} is shared by erf and the normal density.
template <class Scalar>
inline void gelu_erf_pair(Scalar v, Scalar& y, Scalar& d) {
  const Scalar u = v * Scalar(0.70710678118654752440);  // v / sqrt(2)
  Scalar e, erf_u;
  if constexpr (std::is_same_v<Scalar, float>) {
    e = fast::exp(-u * u);
    erf_u = fast::erf_given_exp(u, e);
  } else {
    e = std::exp(-u * u);
    erf_u = std::erf(u);
  }
  const Scalar cdf = Scalar(0.5) * (Scalar(1) + erf_u);
  y = v * cdf;
  d = cdf + v * Scalar(0.39894228040143267794) * e;  // + v / sqrt(2 pi) e^{-v^2/2}
}
// The same for the tanh approximation.
template <class Scalar>
inline void gelu_tanh_pair(Scalar v, Scalar& y, Scalar& d) {
  const Scalar k = Scalar(0.79788456080286535588);  // sqrt(2/pi)
  const Scalar t = std::tanh(k * (v + Scalar(0.044715) * v * v * v));
  y = Scalar(0.5) * v * (Scalar(1) + t);
  d = Scalar(0.5) * (Scalar(1) + t) + Scalar(0.5) * v * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3 * 0.044715) * v * v);
}
}  // namespace detail

namespace detail {
// y = GELU(x), d = GELU'(x) over n elements of one thread's share (d may equal x).
template <class A>
void gelu_pair_span(const A* x, A* y, A* d, std::ptrdiff_t n, GeluForm form) {
  if (form == GeluForm::erf) {
#pragma omp simd
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      A yi, di;
      gelu_erf_pair(x[i], yi, di);
      y[i] = yi;
      d[i] = di;
    }
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      A yi, di;
      gelu_tanh_pair(x[i], yi, di);
      y[i] = yi;
      d[i] = di;
    }
  }
}
}  // namespace detail

// y = GELU(x) and d = GELU'(x) in one pass (d may equal x: the CPU layer keeps the derivative in
// place of the pre-activation, and its backward is then one product, gelu_backward_given()).
// Storage float, double or bf16 (in spans widened to float; y and d each rounded once).
template <class S>
void gelu_forward_with_derivative(const S* x, S* y, S* d, std::size_t n, GeluForm form) {
  if constexpr (std::is_same_v<S, bf16>) {
    detail::for_spans(n, [&](std::size_t o, std::size_t len) {
      alignas(64) float v[detail::kSpan], w[detail::kSpan];
      detail::widen_span(x + o, v, len);
      detail::gelu_pair_span(v, w, v, static_cast<std::ptrdiff_t>(len), form);
      detail::narrow_span(w, y + o, len);
      detail::narrow_span(v, d + o, len);
    });
  } else {
    constexpr std::ptrdiff_t kPart = 4096;  // threads take whole parts
    const auto N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (N > 65536)
    for (std::ptrdiff_t o = 0; o < N; o += kPart) detail::gelu_pair_span(x + o, y + o, d + o, std::min(kPart, N - o), form);
  }
}

// dx = dy * d, d = GELU'(x) saved by gelu_forward_with_derivative (dx may equal dy or d). Storage
// float, double or bf16 (the product in float, rounded once).
template <class S>
void gelu_backward_given(const S* dy, const S* d, S* dx, std::size_t n) {
  if constexpr (std::is_same_v<S, bf16>) {
    detail::for_spans(n, [&](std::size_t o, std::size_t len) {
      alignas(64) float a[detail::kSpan], b[detail::kSpan];
      detail::widen_span(dy + o, a, len);
      detail::widen_span(d + o, b, len);
#pragma omp simd
      for (std::size_t i = 0; i < len; ++i) a[i] *= b[i];
      detail::narrow_span(a, dx + o, len);
    });
  } else {
    const auto N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (N > 65536)
    for (std::ptrdiff_t i = 0; i < N; ++i) dx[i] = dy[i] * d[i];
  }
}

namespace detail {
// The float (double) loops over n elements of one thread's share.
template <class A>
void gelu_forward_span(const A* x, A* y, std::ptrdiff_t n, GeluForm form) {
  const A inv_sqrt2 = A(0.70710678118654752440);
  const A k = A(0.79788456080286535588);  // sqrt(2/pi)
  if (form == GeluForm::erf) {
#pragma omp simd
    for (std::ptrdiff_t i = 0; i < n; ++i) y[i] = A(0.5) * x[i] * (A(1) + gelu_erf(x[i] * inv_sqrt2));
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) y[i] = A(0.5) * x[i] * (A(1) + std::tanh(k * (x[i] + A(0.044715) * x[i] * x[i] * x[i])));
  }
}
template <class A>
void gelu_backward_span(const A* dy, const A* x, A* dx, std::ptrdiff_t n, GeluForm form) {
  if (form == GeluForm::erf) {
#pragma omp simd
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      A yi, di;
      gelu_erf_pair(x[i], yi, di);
      dx[i] = dy[i] * di;
    }
  } else {
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      A yi, di;
      gelu_tanh_pair(x[i], yi, di);
      dx[i] = dy[i] * di;
    }
  }
}
}  // namespace detail

// y = GELU(x). Storage float, double or bf16 (in spans widened to float, rounded once).
template <class S>
void gelu_forward(const S* x, S* y, std::size_t n, GeluForm form) {
  if constexpr (std::is_same_v<S, bf16>) {
    detail::for_spans(n, [&](std::size_t o, std::size_t len) {
      alignas(64) float v[detail::kSpan];
      detail::widen_span(x + o, v, len);
      detail::gelu_forward_span(v, v, static_cast<std::ptrdiff_t>(len), form);
      detail::narrow_span(v, y + o, len);
    });
  } else {
    constexpr std::ptrdiff_t kPart = 4096;  // threads take whole parts
    const auto N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (N > 65536)
    for (std::ptrdiff_t o = 0; o < N; o += kPart) detail::gelu_forward_span(x + o, y + o, std::min(kPart, N - o), form);
  }
}

// dx = dy * gelu'(x) from the pre-activation x (written; dx may equal dy).
template <class S>
void gelu_backward(const S* dy, const S* x, S* dx, std::size_t n, GeluForm form) {
  if constexpr (std::is_same_v<S, bf16>) {
    detail::for_spans(n, [&](std::size_t o, std::size_t len) {
      alignas(64) float d[detail::kSpan], v[detail::kSpan];
      detail::widen_span(dy + o, d, len);
      detail::widen_span(x + o, v, len);
      detail::gelu_backward_span(d, v, d, static_cast<std::ptrdiff_t>(len), form);
      detail::narrow_span(d, dx + o, len);
    });
  } else {
    constexpr std::ptrdiff_t kPart = 4096;
    const auto N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for schedule(static) if (N > 65536)
    for (std::ptrdiff_t o = 0; o < N; o += kPart) detail::gelu_backward_span(dy + o, x + o, dx + o, std::min(kPart, N - o), form);
  }
}

}  // namespace pld::cpu
