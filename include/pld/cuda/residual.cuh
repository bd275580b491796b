// The residual branches of the gated Pre-LN layer: out = x + g * Dropout(t), where t is the
// branch output with its bias already added by the GEMM epilogue and g the gate scale; fused
// with LayerNorm 2 for the attention branch (one pass writes h and LN2(h)). Backward: the branch
// gradient g * Dropout(dy) with the mask recomputed from its key.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/dropout.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/layer_norm.cuh"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

namespace detail {

// Four consecutive elements per thread: one Philox block serves them when e0 % 4 == 0.
template <class T>
__global__ void residual_dropout_kernel(const T* x, const T* t, T* out, std::int64_t n, float g, DropoutMask mask) {
  const std::int64_t e0 = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (e0 >= n) return;
  bool keep[4];
  mask.keeps4(static_cast<std::uint64_t>(e0), keep);
  for (int w = 0; w < 4; ++w) {
    const std::int64_t e = e0 + w;
    if (e >= n) break;
    const float branch = keep[w] ? to_float(t[e]) * mask.scale : 0.0f;
    out[e] = from_float<T>((x ? to_float(x[e]) : 0.0f) + g * branch);
  }
}

template <class T>
__global__ void residual_layer_norm_kernel(const T* __restrict__ x, const T* __restrict__ t, T* __restrict__ h,
                                           const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                                           float* __restrict__ mean, float* __restrict__ rstd, int rows, int cols, float g,
                                           DropoutMask mask, float eps) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const std::int64_t base = static_cast<std::int64_t>(row) * cols;
  for (int c = lane; c < cols; c += 32) {
    const std::int64_t e = base + c;
    h[e] = from_float<T>(to_float(x[e]) + g * mask.apply(to_float(t[e]), static_cast<std::uint64_t>(e)));
  }
  // Each lane reads back exactly the elements it wrote: no barrier needed. The statistics use
  // the stored (rounded) h, which is what the backward sees.
  float m, rs;
  row_moments(h + base, cols, eps, m, rs);
  for (int c = lane; c < cols; c += 32)
    y[base + c] = from_float<T>((to_float(h[base + c]) - m) * rs * to_float(gamma[c]) + to_float(beta[c]));
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

}  // namespace detail

// out = x + g * Dropout(t) over n elements (element e of the mask's stream). out may equal t or
// x; x null means 0 (then out = g * Dropout(t): the branch gradient of the backward).
template <class T>
void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, float g, const DropoutMask& mask,
                      cudaStream_t stream, LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(n, 4 * detail::kBlock), detail::kBlock, stream, detail::residual_dropout_kernel<T>)(x, t, out, n, g,
                                                                                                                 mask);
  check_launch("residual_dropout_kernel");
  counts.kernels += 1;
}

// h = x + g * Dropout(t), then y = LayerNorm(h) with its mean and rstd saved. No aliasing.
template <class T>
void residual_layer_norm(const T* x, const T* t, T* h, const T* gamma, const T* beta, T* y, float* mean, float* rstd,
                         int rows, int cols, float g, const DropoutMask& mask, double eps, cudaStream_t stream,
                         LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows, detail::kWarpsPerBlock), detail::kBlock, stream, detail::residual_layer_norm_kernel<T>)(
      x, t, h, gamma, beta, y, mean, rstd, rows, cols, g, mask, static_cast<float>(eps));
  check_launch("residual_layer_norm_kernel");
  counts.kernels += 1;
}

}  // namespace pld::cuda
