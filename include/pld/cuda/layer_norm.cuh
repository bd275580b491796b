// LayerNorm over the last dimension on the GPU, one warp per row, fp32 statistics:
// y = (x - mean) rstd gamma + beta. The forward saves mean and rstd (fp32, one per row); the
// backward writes dx (plus an optional residual gradient, fused: the Pre-LN residual stream's
// gradient is added in the same pass) and accumulates dgamma, dbeta through layer_norm_column_sums.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

namespace detail {

// Two-pass mean and variance of one row (biased variance, as PyTorch), by one warp. No
// __restrict__ on xr: residual_layer_norm reads back rows it has just written, and a const
// restrict pointer would let the compiler use the non-coherent read-only path for them.
template <class T>
__device__ inline void row_moments(const T* xr, int cols, float eps, float& mean, float& rstd) {
  const int lane = threadIdx.x % 32;
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += to_float(xr[c]);
  const float m = warp_sum(s) / static_cast<float>(cols);
  float v = 0.0f;
  for (int c = lane; c < cols; c += 32) {
    const float d = to_float(xr[c]) - m;
    v += d * d;
  }
  v = warp_sum(v) / static_cast<float>(cols);
  mean = m;
  rstd = rsqrtf(v + eps);
}

template <class T>
__global__ void layer_norm_forward_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                          T* __restrict__ y, float* __restrict__ mean, float* __restrict__ rstd, int rows,
                                          int cols, float eps) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const T* xr = x + static_cast<std::int64_t>(row) * cols;
  T* yr = y + static_cast<std::int64_t>(row) * cols;
  float m, rs;
  row_moments(xr, cols, eps, m, rs);
  for (int c = lane; c < cols; c += 32)
    yr[c] = from_float<T>((to_float(xr[c]) - m) * rs * to_float(gamma[c]) + to_float(beta[c]));
  if (lane == 0) {
    mean[row] = m;
    rstd[row] = rs;
  }
}

// With xhat = (x - mean) rstd and g = dy gamma: dx = rstd (g - mean(g) - xhat mean(g xhat)) + res.
template <class T>
__global__ void layer_norm_backward_kernel(const T* __restrict__ dy, const T* __restrict__ x, const float* __restrict__ mean,
                                           const float* __restrict__ rstd, const T* __restrict__ gamma,
                                           const T* __restrict__ residual, T* __restrict__ dx, int rows, int cols) {
  const int row = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const std::int64_t base = static_cast<std::int64_t>(row) * cols;
  const float m = mean[row], rs = rstd[row];
  float sg = 0.0f, sgx = 0.0f;
  for (int c = lane; c < cols; c += 32) {
    const float g = to_float(dy[base + c]) * to_float(gamma[c]);
    sg += g;
    sgx += g * (to_float(x[base + c]) - m) * rs;
  }
  const float mg = warp_sum(sg) / static_cast<float>(cols);
  const float mgx = warp_sum(sgx) / static_cast<float>(cols);
  for (int c = lane; c < cols; c += 32) {
    const float xh = (to_float(x[base + c]) - m) * rs;
    float v = rs * (to_float(dy[base + c]) * to_float(gamma[c]) - mg - xh * mgx);
    if (residual) v += to_float(residual[base + c]);
    dx[base + c] = from_float<T>(v);
  }
}

}  // namespace detail

template <class T>
void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows, int cols,
                        double eps, cudaStream_t stream, LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows, detail::kWarpsPerBlock), detail::kBlock, stream, detail::layer_norm_forward_kernel<T>)(
      x, gamma, beta, y, mean, rstd, rows, cols, static_cast<float>(eps));
  check_launch("layer_norm_forward_kernel");
  counts.kernels += 1;
}

// dx written (it must not alias an input); dgamma, dbeta accumulate. scratch: layer_norm_sums_scratch(rows, cols) floats.
template <class T>
void layer_norm_backward(const T* dy, const T* x, const float* mean, const float* rstd, const T* gamma, const T* residual,
                         T* dx, float* dgamma, float* dbeta, int rows, int cols, float* scratch, cudaStream_t stream,
                         LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows, detail::kWarpsPerBlock), detail::kBlock, stream, detail::layer_norm_backward_kernel<T>)(
      dy, x, mean, rstd, gamma, residual, dx, rows, cols);
  check_launch("layer_norm_backward_kernel");
  counts.kernels += 1;
  layer_norm_column_sums<T>(dy, x, mean, rstd, rows, cols, dgamma, dbeta, scratch, stream, counts);
}

}  // namespace pld::cuda
