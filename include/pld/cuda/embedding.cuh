// BERT's input embeddings on the GPU: forward y[r] = tok[ids[r]] + pos[r % T] (the sum the model
// then normalises or feeds to the first layer), and the backward into fp32 gradients of both
// tables, deterministic without atomics: the host, which made the token ids, sorts the rows by id
// (EmbeddingGradPlan), and one warp per distinct id sums its rows in a fixed order. The position
// gradient is a fixed-order sum over the batch. Storage T (bf16, fp16, fp32) for the tables and
// activations; fp32 gradients, accumulated (+=).
#pragma once

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <vector>

#include <cuda_runtime.h>

#include "pld/core/error.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/storage.hpp"

namespace pld::cuda {

// The rows of one batch grouped by token id, built on the host from the ids it uploads:
// ids_unique[k] is the k-th distinct id (ascending), its rows are rows[offsets[k] .. offsets[k+1]).
struct EmbeddingGradPlan {
  std::vector<int> ids_unique;
  std::vector<int> offsets;  // ids_unique.size() + 1
  std::vector<int> rows;     // every row once, grouped by id, ascending within a group

  // ids: (n) token ids of the batch's rows, each in [0, vocab): anything else is a pld::Error
  // (a kernel cannot report it, and an id past the table would write out of bounds).
  static EmbeddingGradPlan build(const int* ids, std::int64_t n, int vocab) {
    EmbeddingGradPlan p;
    for (std::int64_t i = 0; i < n; ++i)
      if (ids[i] < 0 || ids[i] >= vocab) pld::detail::throw_error("embedding: token id ", ids[i], " at row ", i, " is outside [0, ", vocab, ")");
    p.rows.resize(static_cast<std::size_t>(n));
    std::iota(p.rows.begin(), p.rows.end(), 0);
    std::stable_sort(p.rows.begin(), p.rows.end(), [&](int a, int b) { return ids[a] < ids[b]; });
    for (std::size_t k = 0; k < p.rows.size(); ++k) {
      const int id = ids[p.rows[k]];
      if (p.ids_unique.empty() || p.ids_unique.back() != id) {
        p.ids_unique.push_back(id);
        p.offsets.push_back(static_cast<int>(k));
      }
    }
    p.offsets.push_back(static_cast<int>(p.rows.size()));
    return p;
  }
  int groups() const { return static_cast<int>(ids_unique.size()); }
};

namespace detail {

// One warp per row r: y[r, c] = tok[ids[r], c] + pos[r % seq, c].
template <class T>
__global__ void embedding_forward_kernel(const int* __restrict__ ids, const T* __restrict__ tok, const T* __restrict__ pos,
                                         T* __restrict__ y, int rows, int seq, int hidden) {
  const int r = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const T* t = tok + static_cast<std::int64_t>(ids[r]) * hidden;
  const T* p = pos + static_cast<std::int64_t>(r % seq) * hidden;
  T* out = y + static_cast<std::int64_t>(r) * hidden;
  for (int c = lane; c < hidden; c += 32) out[c] = from_float<T>(to_float(t[c]) + to_float(p[c]));
}

// One warp per distinct id k: dtok[id_k, c] += sum of dy[r, c] over its rows, in plan order.
template <class T>
__global__ void embedding_token_grad_kernel(const T* __restrict__ dy, const int* __restrict__ ids_unique,
                                            const int* __restrict__ offsets, const int* __restrict__ rows, int groups, int hidden,
                                            float* __restrict__ dtok) {
  const int k = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (k >= groups) return;
  float* out = dtok + static_cast<std::int64_t>(ids_unique[k]) * hidden;
  for (int c = lane; c < hidden; c += 32) {
    float s = 0.0f;
    for (int i = offsets[k]; i < offsets[k + 1]; ++i) s += to_float(dy[static_cast<std::int64_t>(rows[i]) * hidden + c]);
    out[c] += s;
  }
}

// One thread per (t, c): dpos[t, c] += sum over b of dy[b * seq + t, c].
template <class T>
__global__ void embedding_position_grad_kernel(const T* __restrict__ dy, int batch, int seq, int hidden, float* __restrict__ dpos) {
  const std::int64_t e = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= static_cast<std::int64_t>(seq) * hidden) return;
  float s = 0.0f;
  for (int b = 0; b < batch; ++b) s += to_float(dy[static_cast<std::int64_t>(b) * seq * hidden + e]);
  dpos[e] += s;
}

}  // namespace detail

// y (B*T, H) = tok[ids] + pos[position]; ids (B*T) device ints checked on the host
// (EmbeddingGradPlan::build checks them too).
template <class T>
void embedding_forward(const int* ids, const T* tok, const T* pos, T* y, int batch, int seq, int hidden, cudaStream_t stream,
                       LaunchCounts& counts) {
  const int rows = batch * seq;
  if (rows == 0) return;
  PLD_LAUNCH(detail::blocks_for(rows, detail::kWarpsPerBlock), detail::kBlock, stream, detail::embedding_forward_kernel<T>)(
      ids, tok, pos, y, rows, seq, hidden);
  check_launch("embedding_forward_kernel");
  counts.kernels += 1;
}

// dtok += scatter of dy by id (plan uploaded to the device: ids_unique, offsets, rows), dpos +=
// the batch sum of dy per position. Deterministic: the same bits on every run.
template <class T>
void embedding_backward(const T* dy, const int* ids_unique, const int* offsets, const int* rows, int groups, int batch, int seq,
                        int hidden, float* dtok, float* dpos, cudaStream_t stream, LaunchCounts& counts) {
  if (groups > 0) {
    PLD_LAUNCH(detail::blocks_for(groups, detail::kWarpsPerBlock), detail::kBlock, stream, detail::embedding_token_grad_kernel<T>)(
        dy, ids_unique, offsets, rows, groups, hidden, dtok);
    check_launch("embedding_token_grad_kernel");
    counts.kernels += 1;
  }
  if (dpos && batch > 0) {
    PLD_LAUNCH(detail::blocks_for(static_cast<std::int64_t>(seq) * hidden, detail::kBlock), detail::kBlock, stream,
               detail::embedding_position_grad_kernel<T>)(dy, batch, seq, hidden, dpos);
    check_launch("embedding_position_grad_kernel");
    counts.kernels += 1;
  }
}

}  // namespace pld::cuda
