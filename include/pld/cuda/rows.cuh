// Per-sample mode: gather the rows (sequences) that run through a layer into a dense batch and
// scatter the results back. Row k of the dense batch is row index[k] of the full one.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"

namespace pld::cuda {

namespace detail {
template <class E>
__global__ void gather_rows_kernel(const E* __restrict__ src, const int* __restrict__ index, int rows, std::int64_t row_elems,
                                   E* __restrict__ dst) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * row_elems) return;
  const std::int64_t k = i / row_elems, j = i % row_elems;
  dst[i] = src[static_cast<std::int64_t>(index[k]) * row_elems + j];
}

template <class E>
__global__ void scatter_rows_kernel(const E* __restrict__ src, const int* __restrict__ index, int rows, std::int64_t row_elems,
                                    E* __restrict__ dst) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * row_elems) return;
  const std::int64_t k = i / row_elems, j = i % row_elems;
  dst[static_cast<std::int64_t>(index[k]) * row_elems + j] = src[i];
}
}  // namespace detail

// dst (rows, row_elems) = src[index[k]] for k < rows.
template <class E>
void gather_rows(const E* src, const int* index, int rows, std::int64_t row_elems, E* dst, cudaStream_t stream,
                 LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows * row_elems, detail::kBlock), detail::kBlock, stream, detail::gather_rows_kernel<E>)(
      src, index, rows, row_elems, dst);
  check_launch("gather_rows_kernel");
  counts.kernels += 1;
}

// dst[index[k]] = src (rows, row_elems) for k < rows; other rows of dst untouched.
template <class E>
void scatter_rows(const E* src, const int* index, int rows, std::int64_t row_elems, E* dst, cudaStream_t stream,
                  LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows * row_elems, detail::kBlock), detail::kBlock, stream, detail::scatter_rows_kernel<E>)(
      src, index, rows, row_elems, dst);
  check_launch("scatter_rows_kernel");
  counts.kernels += 1;
}

}  // namespace pld::cuda
