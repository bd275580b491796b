// The masked-language-model loss on the GPU: softmax cross-entropy of each row of logits (the MLM
// head's output on the masked rows) against its target id, fused with its gradient, written over
// the logits in place: dlogits = (softmax - onehot(target)) * grad_scale, where grad_scale is
// 1 / (masked rows of the whole step) (times the loss scale under fp16). One warp per row:
// max, sum of exponentials and the target's logit in fp32, whatever the storage type. A row
// whose target is negative predicts nothing: loss 0, gradient 0.
#pragma once

#include <cmath>
#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

namespace detail {

template <class T>
__global__ void softmax_cross_entropy_kernel(T* __restrict__ logits, const int* __restrict__ targets, int rows, int vocab,
                                             float grad_scale, float* __restrict__ loss, int* __restrict__ correct) {
  const int r = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  T* x = logits + static_cast<std::int64_t>(r) * vocab;
  const int target = targets[r];
  if (target < 0) {
    for (int c = lane; c < vocab; c += 32) x[c] = from_float<T>(0.0f);
    if (lane == 0) {
      loss[r] = 0.0f;
      if (correct) correct[r] = 0;
    }
    return;
  }
  // The maximum and the first column that reaches it (the argmax, for accuracy).
  float m = -INFINITY;
  int arg = vocab;
  for (int c = lane; c < vocab; c += 32) {
    const float v = to_float(x[c]);
    if (v > m) {
      m = v;
      arg = c;
    }
  }
  const float row_max = warp_max(m);
  float first = m == row_max ? static_cast<float>(arg) : static_cast<float>(vocab);
  for (int o = 16; o > 0; o >>= 1) first = fminf(first, __shfl_xor_sync(0xffffffffu, first, o));
  const float x_target = to_float(x[target]);
  float s = 0.0f;
  for (int c = lane; c < vocab; c += 32) s += expf(to_float(x[c]) - row_max);
  const float sum = warp_sum(s);
  __syncwarp();  // every lane has read x[target] before any lane overwrites the row
  const float inv = 1.0f / sum;
  for (int c = lane; c < vocab; c += 32) {
    const float p = expf(to_float(x[c]) - row_max) * inv;
    x[c] = from_float<T>((p - (c == target ? 1.0f : 0.0f)) * grad_scale);
  }
  if (lane == 0) {
    loss[r] = logf(sum) + row_max - x_target;
    if (correct) correct[r] = static_cast<int>(first) == target ? 1 : 0;
  }
}

}  // namespace detail

// logits (rows, vocab) in place -> dlogits; loss (rows) per-row cross-entropy (0 where the target
// is negative); correct (rows, may be null) 1 where the first argmax equals the target. Targets
// must be < vocab (checked on the host where they are made).
template <class T>
void softmax_cross_entropy(T* logits, const int* targets, int rows, int vocab, float grad_scale, float* loss, int* correct,
                           cudaStream_t stream, LaunchCounts& counts) {
  if (rows == 0) return;
  PLD_LAUNCH(detail::blocks_for(rows, detail::kWarpsPerBlock), detail::kBlock, stream, detail::softmax_cross_entropy_kernel<T>)(
      logits, targets, rows, vocab, grad_scale, loss, correct);
  check_launch("softmax_cross_entropy_kernel");
  counts.kernels += 1;
}

}  // namespace pld::cuda
