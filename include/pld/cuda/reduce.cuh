// Reductions of the CUDA layer: the warp sum the row kernels use, and a deterministic column sum
// (bias and LayerNorm parameter gradients). Column sums run in two launches, per-chunk partials
// then a fixed-order total, so gradients are the same bits on every run (no atomics), and they
// accumulate (+=) into fp32 gradients as the layer contract says.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

namespace detail {

// partial[chunk, c] = sum over the chunk's rows r of a[r, c] (* xhat[r, c] when x is given,
// xhat = (x - mean[r]) rstd[r]: the LayerNorm weight gradient); with partial_a, also the plain sum
// of a into it from the same read (the LayerNorm bias gradient beside its weight's). A block
// strides over chunks by gridDim.y, which is capped at 65535 (column_sums_grid): more rows than
// 65535 chunks still work.
template <class T>
__global__ void column_partials_kernel(const T* __restrict__ a, const T* __restrict__ x, const float* __restrict__ mean,
                                       const float* __restrict__ rstd, int rows, int cols, float* __restrict__ partial,
                                       float* __restrict__ partial_a) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  const int chunks = (rows + kColumnChunkRows - 1) / kColumnChunkRows;
  for (int chunk = static_cast<int>(blockIdx.y); chunk < chunks; chunk += static_cast<int>(gridDim.y)) {
    const int r0 = chunk * kColumnChunkRows;
    const int r1 = min(rows, r0 + kColumnChunkRows);
    float s = 0.0f, sa = 0.0f;
    for (int r = r0; r < r1; ++r) {
      const std::int64_t i = static_cast<std::int64_t>(r) * cols + c;
      float v = to_float(a[i]);
      if (partial_a) sa += v;
      if (x) v *= (to_float(x[i]) - mean[r]) * rstd[r];
      s += v;
    }
    partial[static_cast<std::int64_t>(chunk) * cols + c] = s;
    if (partial_a) partial_a[static_cast<std::int64_t>(chunk) * cols + c] = sa;
  }
}

// out[c] += the chunks' partials in chunk order (and out_a[c] from partial_a when given). A
// template so the header can be included by several translation units (one kernel per use).
template <class Acc = float>
__global__ void column_total_kernel(const float* __restrict__ partial, const float* __restrict__ partial_a, int chunks, int cols,
                                    float* __restrict__ out, float* __restrict__ out_a) {
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= cols) return;
  Acc s = 0, sa = 0;
  for (int k = 0; k < chunks; ++k) {
    s += partial[static_cast<std::int64_t>(k) * cols + c];
    if (partial_a) sa += partial_a[static_cast<std::int64_t>(k) * cols + c];
  }
  out[c] += s;
  if (partial_a) out_a[c] += sa;
}

// The two launches; out_a (and the second half of scratch) only for layer_norm_column_sums.
template <class T>
void column_sums_into(const T* a, const T* x, const float* mean, const float* rstd, int rows, int cols, float* out, float* out_a,
                      float* scratch, cudaStream_t stream, LaunchCounts& counts) {
  const int chunks = static_cast<int>(column_sums_scratch(rows, 1));
  const ColumnSumsGrid g = column_sums_grid(rows, cols);
  float* partial_a = out_a ? scratch + column_sums_scratch(rows, cols) : nullptr;
  PLD_LAUNCH(dim3(g.x, g.y), kBlock, stream, column_partials_kernel<T>)(a, x, mean, rstd, rows, cols, scratch, partial_a);
  check_launch("column_partials_kernel");
  PLD_LAUNCH(blocks_for(cols, kBlock), kBlock, stream, column_total_kernel<>)(scratch, partial_a, chunks, cols, out, out_a);
  check_launch("column_total_kernel");
  counts.kernels += 2;
}
}  // namespace detail

// out[c] += sum_r a[r, c] (* xhat[r, c] with x, mean, rstd given). Two launches.
template <class T>
void column_sums(const T* a, const T* x, const float* mean, const float* rstd, int rows, int cols, float* out,
                 float* scratch, cudaStream_t stream, LaunchCounts& counts) {
  detail::column_sums_into<T>(a, x, mean, rstd, rows, cols, out, nullptr, scratch, stream, counts);
}

// Both LayerNorm parameter gradients: out_ax[c] += sum_r a[r, c] xhat[r, c] (dgamma) and
// out_a[c] += sum_r a[r, c] (dbeta), from one pass over a and x, in two launches (two
// column_sums calls took four and read a twice). scratch: layer_norm_sums_scratch(rows, cols).
template <class T>
void layer_norm_column_sums(const T* a, const T* x, const float* mean, const float* rstd, int rows, int cols, float* out_ax,
                            float* out_a, float* scratch, cudaStream_t stream, LaunchCounts& counts) {
  detail::column_sums_into<T>(a, x, mean, rstd, rows, cols, out_ax, out_a, scratch, stream, counts);
}

}  // namespace pld::cuda
