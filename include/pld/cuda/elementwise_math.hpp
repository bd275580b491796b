// Scalar math of the CUDA kernels written once for host and device: GELU forward and derivative
// in fp32, and (from pld/layer/head_shape.hpp) the head split's index map. The host tests check
// these against the CPU layer's functions.
#pragma once

#include <cmath>
#include <cstdint>

#include "pld/core/config.hpp"
#include "pld/layer/head_shape.hpp"
#include "pld/layer/layer_config.hpp"

namespace pld::cuda {

PLD_HOST_DEVICE float gelu_value(float v, GeluForm form) {
  if (form == GeluForm::erf) return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
  const float u = 0.79788456080286536f * (v + 0.044715f * v * v * v);
  return 0.5f * v * (1.0f + tanhf(u));
}

PLD_HOST_DEVICE float gelu_grad(float v, GeluForm form) {
  if (form == GeluForm::erf)
    return 0.5f * (1.0f + erff(v * 0.70710678118654752f)) + v * 0.39894228040143268f * expf(-0.5f * v * v);
  const float k = 0.79788456080286536f;
  const float t = tanhf(k * (v + 0.044715f * v * v * v));
  return 0.5f * (1.0f + t) + 0.5f * v * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * v * v);
}

using pld::HeadShape;
using pld::packed_offset;

}  // namespace pld::cuda
