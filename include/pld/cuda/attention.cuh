// The memory-bound half of self-attention on the GPU; the products (Q K^T, P V and their
// gradients) are batched cuBLASLt GEMMs over head-major (B, heads, T, d) operands.
//  - split_heads / merge_heads: packed row-major (B*T, parts*H) <-> head-major (parts, B, heads, T, d),
//    in 16-byte vectors where d and the pointers allow (element by element otherwise).
//  - softmax_forward: masked softmax of fp32 scores (padding keys get probability 0), saving P and
//    writing the dropped probabilities for P V. One warp per row, the row in registers: T <= 1024.
//  - softmax_backward: dS = P o (dP - rowsum(dP o P)) / sqrt(d), with dP = Dropout(d(P dropped)):
//    the mask is recomputed from its key, never stored.
// Dropout element e of the attention-probability stream is (b * heads + h) * T * T + i * T + j, as
// on the CPU.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <cuda_runtime.h>

#include "pld/core/error.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/elementwise_math.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/storage.hpp"
#include "pld/cuda/workspace.hpp"

namespace pld::cuda {

namespace detail {

// 16 bytes from src to dst, both 16-byte aligned: one 128-bit load and store on the device.
PLD_HOST_DEVICE void copy16(void* dst, const void* src) {
#if defined(__CUDA_ARCH__)
  *static_cast<uint4*>(dst) = *static_cast<const uint4*>(src);
#else
  std::memcpy(dst, src, 16);  // the host emulation: no aliasing through uint4
#endif
}

// The head split and merge in 16-byte vectors (dim a multiple of 16 / sizeof(T), both pointers
// 16-byte aligned): one block per packed row (b, t), whose parts * H elements are contiguous, so
// the packed side is read or written in full 16-byte vectors along the row and the head-major side
// in runs of `dim` elements; 32-bit index arithmetic once per vector. The element-wise kernels
// below are the fallback (one element and a 64-bit index decomposition per thread).
template <class T, bool kSplit>
__global__ void heads_vec16_kernel(const T* __restrict__ src, T* __restrict__ dst, HeadShape s) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  const std::int64_t row = blockIdx.x;  // b * seq + t
  const int b = static_cast<int>(row / s.seq), t = static_cast<int>(row % s.seq);
  const int hv = s.hidden() / kVec, dv = s.dim / kVec, per_row = s.parts * hv;
  for (int j = static_cast<int>(threadIdx.x); j < per_row; j += static_cast<int>(blockDim.x)) {
    const int part = j / hv, rem = j - part * hv;
    const int h = rem / dv, iv = rem - h * dv;
    const std::int64_t packed = row * per_row * kVec + static_cast<std::int64_t>(j) * kVec;
    const std::int64_t head = (((static_cast<std::int64_t>(part) * s.batch + b) * s.heads + h) * s.seq + t) * s.dim +
                              static_cast<std::int64_t>(iv) * kVec;
    if (kSplit)
      copy16(dst + head, src + packed);
    else
      copy16(dst + packed, src + head);
  }
}

template <class T>
__global__ void split_heads_kernel(const T* __restrict__ packed, T* __restrict__ heads, HeadShape s) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < s.elements()) heads[i] = packed[packed_offset(s, i)];
}

template <class T>
__global__ void merge_heads_kernel(const T* __restrict__ heads, T* __restrict__ packed, HeadShape s) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < s.elements()) packed[packed_offset(s, i)] = heads[i];
}

// Lane `lane` owns columns 4 (lane + 32 k) + w, k < kGroups, w < 4: T <= 128 kGroups.
template <class T, int kGroups>
__global__ void softmax_forward_kernel(const float* __restrict__ scores, const std::uint8_t* __restrict__ valid,
                                       T* __restrict__ probs, T* __restrict__ dropped, std::int64_t rows, int seq,
                                       int heads, DropoutMask mask) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const std::int64_t b = row / seq / heads;
  const std::int64_t base = row * seq;
  const std::uint8_t* vb = valid ? valid + b * seq : nullptr;
  float v[kGroups * 4];
  float mx = -INFINITY;
#pragma unroll
  for (int k = 0; k < kGroups; ++k)
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int c = 4 * (lane + 32 * k) + w;
      const bool live = c < seq && (!vb || vb[c]);
      v[4 * k + w] = live ? scores[base + c] : -INFINITY;
      mx = fmaxf(mx, v[4 * k + w]);
    }
  mx = warp_max(mx);
  float sum = 0.0f;
#pragma unroll
  for (int i = 0; i < kGroups * 4; ++i) {
    v[i] = v[i] == -INFINITY ? 0.0f : expf(v[i] - mx);
    sum += v[i];
  }
  sum = warp_sum(sum);
  const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;  // a row with no real key: all zero, never NaN
#pragma unroll
  for (int k = 0; k < kGroups; ++k) {
    const int c0 = 4 * (lane + 32 * k);
    if (c0 >= seq) break;
    bool keep[4];
    mask.keeps4(static_cast<std::uint64_t>(base + c0), keep);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int c = c0 + w;
      if (c >= seq) break;
      const T p = from_float<T>(v[4 * k + w] * inv);
      probs[base + c] = p;
      // From the stored (rounded) P, as the backward's recomputation will see it.
      if (dropped) dropped[base + c] = from_float<T>(keep[w] ? to_float(p) * mask.scale : 0.0f);
    }
  }
}

template <class T, int kGroups>
__global__ void softmax_backward_kernel(const float* __restrict__ dropped_grad, const T* __restrict__ probs,
                                        T* __restrict__ dscores, std::int64_t rows, int seq, float score_scale,
                                        DropoutMask mask) {
  const std::int64_t row = static_cast<std::int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const std::int64_t base = row * seq;
  float dp[kGroups * 4], p[kGroups * 4];
  float dot = 0.0f;
#pragma unroll
  for (int k = 0; k < kGroups; ++k) {
    const int c0 = 4 * (lane + 32 * k);
    bool keep[4] = {false, false, false, false};
    if (c0 < seq) mask.keeps4(static_cast<std::uint64_t>(base + c0), keep);
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int c = c0 + w;
      const bool in = c < seq;
      dp[4 * k + w] = in && keep[w] ? dropped_grad[base + c] * mask.scale : 0.0f;
      p[4 * k + w] = in ? to_float(probs[base + c]) : 0.0f;
      dot += dp[4 * k + w] * p[4 * k + w];
    }
  }
  dot = warp_sum(dot);
#pragma unroll
  for (int k = 0; k < kGroups; ++k)
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const int c = 4 * (lane + 32 * k) + w;
      if (c < seq) dscores[base + c] = from_float<T>(p[4 * k + w] * (dp[4 * k + w] - dot) * score_scale);
    }
}

template <class T>
__global__ void dropout_probs_kernel(const T* __restrict__ probs, T* __restrict__ dropped, std::int64_t n, DropoutMask mask) {
  const std::int64_t e0 = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * 4;
  if (e0 >= n) return;
  bool keep[4];
  mask.keeps4(static_cast<std::uint64_t>(e0), keep);
  for (int w = 0; w < 4 && e0 + w < n; ++w)
    dropped[e0 + w] = from_float<T>(keep[w] ? to_float(probs[e0 + w]) * mask.scale : 0.0f);
}

inline int softmax_groups(int seq) {
  if (seq <= 0 || seq > kMaxAttentionSeq)
    pld::detail::throw_error("attention: sequence length must be in 1..", kMaxAttentionSeq, ", got ", seq);
  return seq <= 128 ? 1 : seq <= 256 ? 2 : seq <= 512 ? 4 : 8;
}

}  // namespace detail

namespace detail {
// Whether the split and merge of shape s between a and b can move 16-byte vectors.
template <class T>
bool heads_vectorizable(const HeadShape& s, const void* a, const void* b) {
  constexpr int kVec = 16 / static_cast<int>(sizeof(T));
  return s.dim % kVec == 0 && reinterpret_cast<std::uintptr_t>(a) % 16 == 0 && reinterpret_cast<std::uintptr_t>(b) % 16 == 0 &&
         static_cast<std::int64_t>(s.batch) * s.seq <= 0x7fffffff && static_cast<std::int64_t>(s.parts) * s.hidden() <= 0x7fffffff;
}
constexpr int kHeadsBlock = 128;  // threads per packed row: 3H / 8 = 288 vectors at BERT-base bf16
}  // namespace detail

template <class T>
void split_heads(const T* packed, T* heads, const HeadShape& s, cudaStream_t stream, LaunchCounts& counts) {
  if (detail::heads_vectorizable<T>(s, packed, heads)) {
    PLD_LAUNCH(static_cast<unsigned>(s.batch * s.seq), detail::kHeadsBlock, stream, detail::heads_vec16_kernel<T, true>)(packed, heads, s);
    check_launch("heads_vec16_kernel (split)");
  } else {
    PLD_LAUNCH(detail::blocks_for(s.elements(), detail::kBlock), detail::kBlock, stream, detail::split_heads_kernel<T>)(packed, heads, s);
    check_launch("split_heads_kernel");
  }
  counts.kernels += 1;
}

template <class T>
void merge_heads(const T* heads, T* packed, const HeadShape& s, cudaStream_t stream, LaunchCounts& counts) {
  if (detail::heads_vectorizable<T>(s, heads, packed)) {
    PLD_LAUNCH(static_cast<unsigned>(s.batch * s.seq), detail::kHeadsBlock, stream, detail::heads_vec16_kernel<T, false>)(heads, packed, s);
    check_launch("heads_vec16_kernel (merge)");
  } else {
    PLD_LAUNCH(detail::blocks_for(s.elements(), detail::kBlock), detail::kBlock, stream, detail::merge_heads_kernel<T>)(heads, packed, s);
    check_launch("merge_heads_kernel");
  }
  counts.kernels += 1;
}

// scores (B*heads*T, T) fp32, already scaled by 1/sqrt(d); valid (B, T) or null. probs written;
// dropped written when non-null (with the mask inactive it would equal probs: pass null then).
template <class T>
void softmax_forward(const float* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                     const DropoutMask& mask, cudaStream_t stream, LaunchCounts& counts) {
  const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
  const unsigned grid = detail::blocks_for(rows, detail::kWarpsPerBlock);
  switch (detail::softmax_groups(seq)) {
    case 1: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_forward_kernel<T, 1>)(scores, valid, probs, dropped, rows, seq, heads, mask); break;
    case 2: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_forward_kernel<T, 2>)(scores, valid, probs, dropped, rows, seq, heads, mask); break;
    case 4: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_forward_kernel<T, 4>)(scores, valid, probs, dropped, rows, seq, heads, mask); break;
    default: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_forward_kernel<T, 8>)(scores, valid, probs, dropped, rows, seq, heads, mask); break;
  }
  check_launch("softmax_forward_kernel");
  counts.kernels += 1;
}

// dropped_grad: d(loss)/d(dropped P), fp32 (B*heads*T, T). dscores written in T.
template <class T>
void softmax_backward(const float* dropped_grad, const T* probs, T* dscores, int batch, int heads, int seq, float score_scale,
                      const DropoutMask& mask, cudaStream_t stream, LaunchCounts& counts) {
  const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
  const unsigned grid = detail::blocks_for(rows, detail::kWarpsPerBlock);
  switch (detail::softmax_groups(seq)) {
    case 1: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_backward_kernel<T, 1>)(dropped_grad, probs, dscores, rows, seq, score_scale, mask); break;
    case 2: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_backward_kernel<T, 2>)(dropped_grad, probs, dscores, rows, seq, score_scale, mask); break;
    case 4: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_backward_kernel<T, 4>)(dropped_grad, probs, dscores, rows, seq, score_scale, mask); break;
    default: PLD_LAUNCH(grid, detail::kBlock, stream, detail::softmax_backward_kernel<T, 8>)(dropped_grad, probs, dscores, rows, seq, score_scale, mask); break;
  }
  check_launch("softmax_backward_kernel");
  counts.kernels += 1;
}

// dropped = Dropout(probs) over n elements: the backward's recomputation of the forward's P V operand.
template <class T>
void dropout_probs(const T* probs, T* dropped, std::int64_t n, const DropoutMask& mask, cudaStream_t stream,
                   LaunchCounts& counts) {
  PLD_LAUNCH(detail::blocks_for(n, 4 * detail::kBlock), detail::kBlock, stream, detail::dropout_probs_kernel<T>)(probs, dropped, n, mask);
  check_launch("dropout_probs_kernel");
  counts.kernels += 1;
}

}  // namespace pld::cuda
