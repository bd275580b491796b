// Memory of the layer of basic_pre_ln_layer.hpp, owned by the caller (the CUTLASS way: ask the
// size, pass the memory). Two parts: `saved` holds the activations the backward needs and must
// stay untouched from a layer's forward to its backward (one per kept layer of a stack);
// `scratch` is needed only while a forward or backward runs, so one scratch can serve every layer
// of a stack in turn. A dropped layer needs neither (both sizes are 0). Pure host arithmetic,
// the same on every backend except for the two backend-sized scratch parts (ScratchNeeds).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld {

struct WorkspaceSizes {
  std::size_t saved = 0;
  std::size_t scratch = 0;
};

struct Workspace {
  void* saved = nullptr;
  std::size_t saved_bytes = 0;
  void* scratch = nullptr;
  std::size_t scratch_bytes = 0;
};

// Every buffer starts at a multiple of this from the workspace pointers, which must have it too
// (cudaMalloc's alignment; GEMM libraries pick vectorised kernels from it).
constexpr std::size_t kWorkspaceAlign = 256;

// Scratch a backend sizes itself: its products' workspace (cuBLASLt's, say) and the partial sums
// (elements of the accumulation type) its column-sum passes need for `rows` x `cols`.
struct ScratchNeeds {
  std::size_t products_bytes = 0;
  std::size_t column_sums = 0;
};

namespace detail {

// Byte offsets of every buffer, for `rows` sequences (the kept ones in per-sample mode) of length
// `seq`, storage elements of `elem` bytes, accumulation elements (statistics, scores, partial
// sums) of `acc` bytes. Shapes: N = rows * seq tokens, H hidden, F ffn.
struct WorkspaceLayout {
  // saved
  std::size_t xin = 0;    // (N, H) the layer input (gathered in per-sample mode)
  std::size_t ln1 = 0;    // (N, H)
  std::size_t mean1 = 0;  // (N) accumulation type
  std::size_t rstd1 = 0;  // (N)
  std::size_t qkvh = 0;   // (3, B, heads, T, d) q, k, v head-major (heads read in place: the packed (N, 3H) rows)
  std::size_t probs = 0;  // (B, heads, T, T) softmax output before dropout
  std::size_t ctx = 0;    // (N, H) attention context, packed
  std::size_t h = 0;      // (N, H) after the attention residual
  std::size_t ln2 = 0;    // (N, H)
  std::size_t mean2 = 0;  // (N) accumulation type
  std::size_t rstd2 = 0;  // (N)
  std::size_t pre = 0;    // (N, F) GELU input (a backend with kKeepsGeluDerivative: its derivative, after the forward)
  std::size_t act = 0;    // (N, F) GELU output
  std::size_t index = 0;  // (B) int: per-sample mode, the full-batch row of each kept row
  std::size_t saved_bytes = 0;
  // scratch
  std::size_t qkv = 0;      // (N, 3H) packed q|k|v; in backward dqkv
  std::size_t scores = 0;   // (B, heads, T, T) scores (accumulation type); in backward d(dropped P)
  std::size_t dropped = 0;  // (B, heads, T, T) dropped P; in backward dS
  std::size_t ctxh = 0;     // (B, heads, T, d) head-major context; in backward its gradient (empty: heads in place)
  std::size_t branch = 0;   // (N, H) a branch output before dropout; in backward g Dropout(dy)
  std::size_t wide = 0;     // (N, F) gradient of act, then of pre
  std::size_t dln = 0;      // (N, H) gradient of a LayerNorm output
  std::size_t dh = 0;       // (N, H) gradient of h
  std::size_t dqkvh = 0;    // (3, B, heads, T, d) (empty: heads in place)
  std::size_t rows_in = 0;  // (N, H) per-sample: gathered dy, or the dense y before its scatter
  std::size_t rows_out = 0; // (N, H) per-sample: dense dx before its scatter
  std::size_t valid = 0;    // (B, T) bytes, per-sample: gathered padding mask
  std::size_t colsum = 0;   // partial column sums (accumulation type)
  std::size_t products = 0; // the backend's product workspace
  std::size_t scratch_bytes = 0;

  // need(N, cols): the backend's ScratchNeeds for N rows of at most `cols` columns. heads_split:
  // the layer copies the attention heads into head-major blocks (ctxh, dqkvh); a backend that
  // reads them in place (kReadsHeadsInPlace) needs neither.
  template <class Need>
  static WorkspaceLayout make(const LayerConfig& c, int rows, int seq, std::size_t elem, std::size_t acc, bool per_sample,
                              Need need, bool heads_split = true) {
    WorkspaceLayout L;
    const auto N = static_cast<std::size_t>(rows) * static_cast<std::size_t>(seq);
    const auto H = static_cast<std::size_t>(c.hidden), F = static_cast<std::size_t>(c.ffn_size());
    const auto TT = static_cast<std::size_t>(rows) * static_cast<std::size_t>(c.heads) * static_cast<std::size_t>(seq) *
                    static_cast<std::size_t>(seq);
    std::size_t off = 0;
    auto take = [&off](std::size_t bytes) {
      const std::size_t at = off;
      off += (bytes + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign;
      return at;
    };
    L.xin = take(N * H * elem);
    L.ln1 = take(N * H * elem);
    L.mean1 = take(N * acc);
    L.rstd1 = take(N * acc);
    L.qkvh = take(3 * N * H * elem);
    L.probs = take(TT * elem);
    L.ctx = take(N * H * elem);
    L.h = take(N * H * elem);
    L.ln2 = take(N * H * elem);
    L.mean2 = take(N * acc);
    L.rstd2 = take(N * acc);
    L.pre = take(N * F * elem);
    L.act = take(N * F * elem);
    L.index = per_sample ? take(static_cast<std::size_t>(rows) * sizeof(int)) : off;
    L.saved_bytes = off;

    off = 0;
    const ScratchNeeds s = need(static_cast<std::int64_t>(N), static_cast<std::int64_t>(std::max(3 * H, F)));
    L.qkv = take(3 * N * H * elem);
    L.scores = take(TT * acc);
    L.dropped = take(TT * elem);
    L.ctxh = heads_split ? take(N * H * elem) : off;
    L.branch = take(N * H * elem);
    L.wide = take(N * F * elem);
    L.dln = take(N * H * elem);
    L.dh = take(N * H * elem);
    L.dqkvh = heads_split ? take(3 * N * H * elem) : off;
    L.rows_in = per_sample ? take(N * H * elem) : off;
    L.rows_out = per_sample ? take(N * H * elem) : off;
    L.valid = per_sample ? take(N) : off;
    L.colsum = take(s.column_sums * acc);
    L.products = take(s.products_bytes);
    L.scratch_bytes = off;
    return L;
  }
};

}  // namespace detail

// Rows (sequences) a step runs through the layer: 0 when dropped, the kept rows in per-sample mode.
inline int layer_rows(int batch, const LayerStep& step) {
  if (!step.kept) return 0;
  if (!step.rows) return batch;
  int n = 0;
  for (int b = 0; b < batch; ++b) n += step.rows[b] ? 1 : 0;
  return n;
}

}  // namespace pld
