// GELU, exact erf form x Phi(x) (BERT, PyTorch's default) or the tanh approximation
// (approximate='tanh'). Backward takes the pre-activation the forward saved.
#pragma once

#include <cmath>
#include <cstddef>

#include "pld/layer/layer_config.hpp"

namespace pld::cpu {

using pld::GeluForm;

template <class Scalar>
void gelu_forward(const Scalar* x, Scalar* y, std::size_t n, GeluForm form) {
  const Scalar inv_sqrt2 = Scalar(0.70710678118654752440);
  const Scalar k = Scalar(0.79788456080286535588);  // sqrt(2/pi)
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) {
    const Scalar v = x[i];
    if (form == GeluForm::erf) {
      y[i] = Scalar(0.5) * v * (Scalar(1) + std::erf(v * inv_sqrt2));
    } else {
      y[i] = Scalar(0.5) * v * (Scalar(1) + std::tanh(k * (v + Scalar(0.044715) * v * v * v)));
    }
  }
}

// dx = dy * gelu'(x) (written).
template <class Scalar>
void gelu_backward(const Scalar* dy, const Scalar* x, Scalar* dx, std::size_t n, GeluForm form) {
  const Scalar inv_sqrt2 = Scalar(0.70710678118654752440);
  const Scalar inv_sqrt_2pi = Scalar(0.39894228040143267794);
  const Scalar k = Scalar(0.79788456080286535588);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t i = 0; i < static_cast<std::ptrdiff_t>(n); ++i) {
    const Scalar v = x[i];
    Scalar d;
    if (form == GeluForm::erf) {
      d = Scalar(0.5) * (Scalar(1) + std::erf(v * inv_sqrt2)) + v * inv_sqrt_2pi * std::exp(Scalar(-0.5) * v * v);
    } else {
      const Scalar u = k * (v + Scalar(0.044715) * v * v * v);
      const Scalar t = std::tanh(u);
      d = Scalar(0.5) * (Scalar(1) + t) +
          Scalar(0.5) * v * (Scalar(1) - t * t) * k * (Scalar(1) + Scalar(3 * 0.044715) * v * v);
    }
    dx[i] = dy[i] * d;
  }
}

}  // namespace pld::cpu
