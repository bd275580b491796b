// GELU on the GPU for the forms and shapes cuBLASLt's epilogues do not cover (the exact erf form,
// or an FFN width that is not a multiple of 8): act = gelu(pre) forward, dpre = dact gelu'(pre)
// backward. The scalar math is elementwise_math.hpp's, shared with the host tests.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/elementwise_math.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

namespace detail {
template <class T>
__global__ void gelu_forward_kernel(const T* __restrict__ pre, T* __restrict__ act, std::int64_t n, GeluForm form) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) act[i] = from_float<T>(gelu_value(to_float(pre[i]), form));
}

template <class T>
__global__ void gelu_backward_kernel(const T* dact, const T* __restrict__ pre, T* dpre, std::int64_t n, GeluForm form) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dpre[i] = from_float<T>(to_float(dact[i]) * gelu_grad(to_float(pre[i]), form));
}
}  // namespace detail

template <class T>
void gelu_forward(const T* pre, T* act, std::int64_t n, GeluForm form, cudaStream_t stream, LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(n, detail::kBlock), detail::kBlock, stream, detail::gelu_forward_kernel<T>)(pre, act, n, form);
  check_launch("gelu_forward_kernel");
  counts.kernels += 1;
}

// dpre may equal dact.
template <class T>
void gelu_backward(const T* dact, const T* pre, T* dpre, std::int64_t n, GeluForm form, cudaStream_t stream,
                   LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(n, detail::kBlock), detail::kBlock, stream, detail::gelu_backward_kernel<T>)(dact, pre, dpre, n, form);
  check_launch("gelu_backward_kernel");
  counts.kernels += 1;
}

}  // namespace pld::cuda
