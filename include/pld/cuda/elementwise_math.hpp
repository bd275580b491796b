// Scalar math of the CUDA kernels written once for host and device: GELU forward and derivative
// in fp32, and the index map between the packed row-major (N, parts * H) activations and the
// head-major (parts, B, heads, T, d) layout the batched attention products use. The host tests
// check these against the CPU layer's functions.
#pragma once

#include <cmath>
#include <cstdint>

#include "pld/core/config.hpp"
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

// Shape of the head split: `parts` stacked (B*T, H) blocks (3 for q|k|v, 1 for one tensor).
struct HeadShape {
  int batch, seq, heads, dim, parts;
  PLD_HOST_DEVICE int hidden() const { return heads * dim; }
  PLD_HOST_DEVICE std::int64_t elements() const {
    return static_cast<std::int64_t>(parts) * batch * seq * heads * dim;
  }
};

// Offset in the packed row-major (B*T, parts*H) tensor of head-major element idx, where idx runs
// over (part, b, head, t, i) row-major.
PLD_HOST_DEVICE std::int64_t packed_offset(const HeadShape& s, std::int64_t idx) {
  const int i = static_cast<int>(idx % s.dim);
  idx /= s.dim;
  const int t = static_cast<int>(idx % s.seq);
  idx /= s.seq;
  const int h = static_cast<int>(idx % s.heads);
  idx /= s.heads;
  const int b = static_cast<int>(idx % s.batch);
  const int part = static_cast<int>(idx / s.batch);
  const std::int64_t row = static_cast<std::int64_t>(b) * s.seq + t;
  return row * (static_cast<std::int64_t>(s.parts) * s.hidden()) + static_cast<std::int64_t>(part) * s.hidden() +
         static_cast<std::int64_t>(h) * s.dim + i;
}

}  // namespace pld::cuda
