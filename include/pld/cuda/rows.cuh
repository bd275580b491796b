// Per-sample mode: gather the rows (sequences) that run through a layer into a dense batch and
// scatter the results back. Row k of the dense batch is row index[k] of the full one.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"

namespace pld::cuda {

namespace detail {
// Element i of the dense (rows, row_elems) side; kGather copies full -> dense, else dense -> full.
template <class E, bool kGather>
__global__ void copy_rows_kernel(const E* __restrict__ src, const int* __restrict__ index, int rows, std::int64_t row_elems,
                                 E* __restrict__ dst) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * row_elems) return;
  const std::int64_t full = static_cast<std::int64_t>(index[i / row_elems]) * row_elems + i % row_elems;
  if (kGather)
    dst[i] = src[full];
  else
    dst[full] = src[i];
}
}  // namespace detail

// dst (rows, row_elems) = src[index[k]] for k < rows.
template <class E>
void gather_rows(const E* src, const int* index, int rows, std::int64_t row_elems, E* dst, cudaStream_t stream,
                 LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows * row_elems, detail::kBlock), detail::kBlock, stream, detail::copy_rows_kernel<E, true>)(
      src, index, rows, row_elems, dst);
  check_launch("copy_rows_kernel (gather)");
  counts.kernels += 1;
}

// dst[index[k]] = src (rows, row_elems) for k < rows; other rows of dst untouched.
template <class E>
void scatter_rows(const E* src, const int* index, int rows, std::int64_t row_elems, E* dst, cudaStream_t stream,
                  LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(rows * row_elems, detail::kBlock), detail::kBlock, stream, detail::copy_rows_kernel<E, false>)(
      src, index, rows, row_elems, dst);
  check_launch("copy_rows_kernel (scatter)");
  counts.kernels += 1;
}

}  // namespace pld::cuda
