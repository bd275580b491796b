// Fused multi-tensor optimizers on the GPU: AdamW and LAMB over every parameter tensor of a model
// in a few launches, the global gradient norm (for clipping, and the overflow test of fp16 loss
// scaling) computed on the device and read by the update kernels there: no host sync per step.
// fp32 master weights, gradients and moments; after the update each tensor's storage copy (the
// bf16/fp16 weights the layers multiply with) is written in the same pass.
//
// Semantics are those of pld-bert's CPU optimizer (examples/bert/optimizer.hpp), so a checkpoint
// moves between the two: per-tensor step counts (bias corrections bc1 = 1 - beta1^t, bc2 =
// 1 - beta2^t, passed per tensor: a tensor skipped while its layer was dropped counts fewer
// steps), decoupled weight decay (0 for biases and LayerNorm), LAMB's per-tensor trust ratio
// ||w|| / ||u||. Every sum runs in a fixed order: the same bits on every run.
//
// The host describes the step once per change (tensors skipped or not, step counts): a table of
// OptimizerTensor and the chunk table of make_optimizer_chunks, both copied to the device.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include <cuda_runtime.h>

#include "pld/core/error.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

struct OptimizerTensor {
  float* master = nullptr;     // (n) fp32 weights
  float* grad = nullptr;       // (n) fp32 gradient (LAMB leaves its update direction here)
  float* m = nullptr;          // (n) first moment
  float* v = nullptr;          // (n) second moment
  void* model = nullptr;       // (n) storage copy of the weights (T*), written after the update; may be null
  std::int64_t n = 0;
  float weight_decay = 0.0f;   // 0 for biases and LayerNorm parameters
  float bc1 = 1.0f, bc2 = 1.0f;  // 1 - beta1^t, 1 - beta2^t for this tensor's step count t
  int first_chunk = 0;         // its chunks in the chunk table: [first_chunk, first_chunk + chunks)
  int chunks = 0;
};

struct OptimizerChunk {
  int tensor = 0;
  std::int64_t begin = 0, end = 0;
};

struct OptimizerHyper {
  float lr = 1e-3f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-6f;
  float clip_norm = 1.0f;       // <= 0: no clipping
  float inv_loss_scale = 1.0f;  // gradients are multiplied by this first (fp16 loss scaling)
};

// Elements per chunk: one warp per chunk, 64 per lane.
constexpr std::int64_t kOptimizerChunk = 2048;

// Assigns chunks to `tensors` (first_chunk, chunks) and returns the chunk table. A tensor of n == 0
// gets no chunk; the order is the tensors' order.
inline std::vector<OptimizerChunk> make_optimizer_chunks(std::vector<OptimizerTensor>& tensors) {
  std::vector<OptimizerChunk> out;
  for (std::size_t t = 0; t < tensors.size(); ++t) {
    OptimizerTensor& x = tensors[t];
    if (x.n < 0) pld::detail::throw_error("optimizer tensor ", t, " has ", x.n, " elements");
    if (x.n > 0 && (!x.master || !x.grad || !x.m || !x.v)) pld::detail::throw_error("optimizer tensor ", t, " lacks a buffer");
    x.first_chunk = static_cast<int>(out.size());
    for (std::int64_t b = 0; b < x.n; b += kOptimizerChunk)
      out.push_back(OptimizerChunk{static_cast<int>(t), b, b + kOptimizerChunk < x.n ? b + kOptimizerChunk : x.n});
    x.chunks = static_cast<int>(out.size()) - x.first_chunk;
  }
  return out;
}

// Device stats of a step: [0] the global gradient norm after unscaling (before clipping), [1] 1
// when it is not finite (the update kernels then change nothing: an fp16 overflow step is skipped),
// [2] a running count of such steps (never reset by the kernels).
constexpr int kOptimizerStats = 3;

namespace detail {

// The non-template kernels are templates with a defaulted parameter so that this header can be
// included by several translation units (as in reduce.cuh).

// One warp per chunk: partial[k] = sum of grad^2 over chunk k (gradients as stored, still scaled).
template <class Unused = void>
__global__ void grad_sq_partials_kernel(const OptimizerTensor* __restrict__ tensors, const OptimizerChunk* __restrict__ chunks,
                                               int nchunks, float* __restrict__ partial) {
  const int k = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= nchunks) return;
  const OptimizerChunk c = chunks[k];
  const float* g = tensors[c.tensor].grad;
  float s = 0.0f;
  for (std::int64_t i = c.begin + lane; i < c.end; i += 32) s += g[i] * g[i];
  s = warp_sum(s);
  if (lane == 0) partial[k] = s;
}

// One warp: the fixed-order total of the partials, the norm, the overflow flag and count.
template <class Unused = void>
__global__ void grad_norm_kernel(const float* __restrict__ partial, int nchunks, float inv_loss_scale, float* __restrict__ stats) {
  const int lane = threadIdx.x % 32;
  if (threadIdx.x >= 32) return;
  float s = 0.0f;
  for (int k = lane; k < nchunks; k += 32) s += partial[k];
  s = warp_sum(s);
  if (lane == 0) {
    const float norm = sqrtf(s) * inv_loss_scale;
    const bool bad = !(norm <= 3.0e38f);  // NaN or inf
    stats[0] = norm;
    stats[1] = bad ? 1.0f : 0.0f;
    if (bad) stats[2] += 1.0f;
  }
}

// The gradient's factor this step: unscale, then clip to clip_norm.
__device__ inline float grad_factor(const OptimizerHyper& h, const float* stats) {
  const float norm = stats[0];
  const float clip = (h.clip_norm > 0.0f && norm > h.clip_norm) ? h.clip_norm / norm : 1.0f;
  return h.inv_loss_scale * clip;
}

// Adam's moments and direction for element i (with decay): u = m^/(sqrt(v^) + eps) + wd w.
__device__ inline float adam_direction(const OptimizerHyper& h, const OptimizerTensor& t, std::int64_t i, float factor) {
  const float g = t.grad[i] * factor;
  const float m = h.beta1 * t.m[i] + (1.0f - h.beta1) * g;
  const float v = h.beta2 * t.v[i] + (1.0f - h.beta2) * g * g;
  t.m[i] = m;
  t.v[i] = v;
  return (m / t.bc1) / (sqrtf(v / t.bc2) + h.eps) + t.weight_decay * t.master[i];
}

template <class T>
__global__ void adamw_kernel(const OptimizerTensor* __restrict__ tensors, const OptimizerChunk* __restrict__ chunks, int nchunks,
                             OptimizerHyper h, const float* __restrict__ stats) {
  const int k = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= nchunks || stats[1] != 0.0f) return;
  const OptimizerChunk c = chunks[k];
  const OptimizerTensor t = tensors[c.tensor];
  const float factor = grad_factor(h, stats);
  T* model = static_cast<T*>(t.model);
  for (std::int64_t i = c.begin + lane; i < c.end; i += 32) {
    const float w = t.master[i] - h.lr * adam_direction(h, t, i, factor);
    t.master[i] = w;
    if (model) model[i] = from_float<T>(w);
  }
}

// LAMB, pass 1 (one warp per chunk): moments, the direction u into grad, partial sums of w^2 and
// u^2 into partial[2k], partial[2k + 1].
template <class Unused = void>
__global__ void lamb_direction_kernel(const OptimizerTensor* __restrict__ tensors, const OptimizerChunk* __restrict__ chunks,
                                             int nchunks, OptimizerHyper h, const float* __restrict__ stats,
                                             float* __restrict__ partial) {
  const int k = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= nchunks || stats[1] != 0.0f) return;
  const OptimizerChunk c = chunks[k];
  const OptimizerTensor t = tensors[c.tensor];
  const float factor = grad_factor(h, stats);
  float ww = 0.0f, uu = 0.0f;
  for (std::int64_t i = c.begin + lane; i < c.end; i += 32) {
    const float w = t.master[i];
    const float u = adam_direction(h, t, i, factor);
    t.grad[i] = u;
    ww += w * w;
    uu += u * u;
  }
  ww = warp_sum(ww);
  uu = warp_sum(uu);
  if (lane == 0) {
    partial[2 * k] = ww;
    partial[2 * k + 1] = uu;
  }
}

// LAMB, pass 2 (one warp per tensor): trust[t] = ||w|| / ||u|| (1 when either is 0).
template <class Unused = void>
__global__ void lamb_trust_kernel(const OptimizerTensor* __restrict__ tensors, int ntensors, const float* __restrict__ partial,
                                         const float* __restrict__ stats, float* __restrict__ trust) {
  const int t = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (t >= ntensors || stats[1] != 0.0f) return;
  const OptimizerTensor x = tensors[t];
  float ww = 0.0f, uu = 0.0f;
  for (int k = x.first_chunk + lane; k < x.first_chunk + x.chunks; k += 32) {
    ww += partial[2 * k];
    uu += partial[2 * k + 1];
  }
  ww = warp_sum(ww);
  uu = warp_sum(uu);
  if (lane == 0) trust[t] = (ww > 0.0f && uu > 0.0f) ? sqrtf(ww) / sqrtf(uu) : 1.0f;
}

// LAMB, pass 3 (one warp per chunk): w -= lr * trust * u, and the storage copy.
template <class T>
__global__ void lamb_apply_kernel(const OptimizerTensor* __restrict__ tensors, const OptimizerChunk* __restrict__ chunks, int nchunks,
                                  OptimizerHyper h, const float* __restrict__ stats, const float* __restrict__ trust) {
  const int k = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= nchunks || stats[1] != 0.0f) return;
  const OptimizerChunk c = chunks[k];
  const OptimizerTensor t = tensors[c.tensor];
  const float step = h.lr * trust[c.tensor];
  T* model = static_cast<T*>(t.model);
  for (std::int64_t i = c.begin + lane; i < c.end; i += 32) {
    const float w = t.master[i] - step * t.grad[i];
    t.master[i] = w;
    if (model) model[i] = from_float<T>(w);
  }
}

}  // namespace detail

// Floats of scratch the optimizer needs: 2 per chunk, plus 1 per tensor (LAMB's trust ratios).
inline std::int64_t optimizer_scratch(int nchunks, int ntensors) { return 2 * static_cast<std::int64_t>(nchunks) + ntensors; }

// The global gradient norm of the step into stats (kOptimizerStats floats, device): two launches.
inline void optimizer_grad_norm(const OptimizerTensor* tensors, const OptimizerChunk* chunks, int nchunks, const OptimizerHyper& h,
                                float* scratch, float* stats, cudaStream_t stream, LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(nchunks, detail::kWarpsPerBlock), detail::kBlock, stream, detail::grad_sq_partials_kernel<>)(
      tensors, chunks, nchunks, scratch);
  check_launch("grad_sq_partials_kernel");
  PLD_LAUNCH(1, 32, stream, detail::grad_norm_kernel<>)(scratch, nchunks, h.inv_loss_scale, stats);
  check_launch("grad_norm_kernel");
  counts.kernels += 2;
}

// The AdamW update alone over `chunks`, with `stats` already holding the step's gradient norm
// (optimizer_grad_norm over the same or a wider table: with dropped layers skipped, the norm still
// covers every gradient, as pld-bert's CPU clip does, and the update only the tensors that run).
template <class T>
void adamw_update(const OptimizerTensor* tensors, const OptimizerChunk* chunks, int nchunks, const OptimizerHyper& h,
                  const float* stats, cudaStream_t stream, LaunchCounts& counts) {
  if (nchunks == 0) return;
  PLD_LAUNCH(detail::blocks_for(nchunks, detail::kWarpsPerBlock), detail::kBlock, stream, detail::adamw_kernel<T>)(tensors, chunks,
                                                                                                                   nchunks, h, stats);
  check_launch("adamw_kernel");
  counts.kernels += 1;
}

// One AdamW step over every chunk: the norm, then the update. T: the storage type of the
// tensors' `model` copies.
template <class T>
void adamw_step(const OptimizerTensor* tensors, const OptimizerChunk* chunks, int nchunks, const OptimizerHyper& h, float* scratch,
                float* stats, cudaStream_t stream, LaunchCounts& counts) {
  if (nchunks == 0) return;
  optimizer_grad_norm(tensors, chunks, nchunks, h, scratch, stats, stream, counts);
  adamw_update<T>(tensors, chunks, nchunks, h, stats, stream, counts);
}

// The LAMB update alone (direction, trust ratios, apply: three launches) with `stats` already
// holding the step's gradient norm, as adamw_update. scratch: optimizer_scratch(nchunks, ntensors).
template <class T>
void lamb_update(const OptimizerTensor* tensors, int ntensors, const OptimizerChunk* chunks, int nchunks, const OptimizerHyper& h,
                 float* scratch, const float* stats, cudaStream_t stream, LaunchCounts& counts) {
  if (nchunks == 0) return;
  float* trust = scratch + 2 * static_cast<std::int64_t>(nchunks);
  PLD_LAUNCH(detail::blocks_for(nchunks, detail::kWarpsPerBlock), detail::kBlock, stream, detail::lamb_direction_kernel<>)(
      tensors, chunks, nchunks, h, stats, scratch);
  check_launch("lamb_direction_kernel");
  PLD_LAUNCH(detail::blocks_for(ntensors, detail::kWarpsPerBlock), detail::kBlock, stream, detail::lamb_trust_kernel<>)(
      tensors, ntensors, scratch, stats, trust);
  check_launch("lamb_trust_kernel");
  PLD_LAUNCH(detail::blocks_for(nchunks, detail::kWarpsPerBlock), detail::kBlock, stream, detail::lamb_apply_kernel<T>)(
      tensors, chunks, nchunks, h, stats, trust);
  check_launch("lamb_apply_kernel");
  counts.kernels += 3;
}

// One LAMB step: norm, direction, trust ratios, apply (five launches).
template <class T>
void lamb_step(const OptimizerTensor* tensors, int ntensors, const OptimizerChunk* chunks, int nchunks, const OptimizerHyper& h,
               float* scratch, float* stats, cudaStream_t stream, LaunchCounts& counts) {
  if (nchunks == 0) return;
  optimizer_grad_norm(tensors, chunks, nchunks, h, scratch, stats, stream, counts);
  lamb_update<T>(tensors, ntensors, chunks, nchunks, h, scratch, stats, stream, counts);
}

}  // namespace pld::cuda
