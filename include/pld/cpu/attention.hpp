// Multi-head scaled dot-product self-attention core on a packed qkv buffer, with a key padding
// mask and dropout on the attention probabilities. The products run batched over (batch, head) on
// the caller's Gemm, reading the heads in place inside the packed rows (no split or merge copies);
// softmax, masking and dropout are row loops in between. The forward saves the softmax
// probabilities (pre-dropout); the backward recomputes the dropout mask from its key.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "pld/cpu/dropout.hpp"
#include "pld/cpu/fast_math.hpp"
#include "pld/cpu/gemm.hpp"
#include "pld/cpu/reduce.hpp"

namespace pld::cpu {

struct AttentionShape {
  int batch, seq, hidden, heads;
  int head_dim() const { return hidden / heads; }
  std::size_t probs_size() const { return static_cast<std::size_t>(batch) * heads * seq * seq; }  // (B, heads, T, T)
};

namespace detail {

template <class Scalar>
inline Scalar softmax_exp(Scalar v) {
  if constexpr (std::is_same_v<Scalar, float>) return fast::exp(v);
  else return std::exp(v);
}

// Softmax of every row of (rows, T) scores over the keys valid marks real (valid: (B, T), row r
// belongs to sequence r / rows_per_seq; null: all real), into p (may equal in). A row without a
// real key is all 0. The exponentials in a vectorizable pass (fast::exp in float, within 1.2e-7
// relative); the max and the sum in lanes (pld/cpu/reduce.hpp): the same bits whatever the threads.
template <class Scalar>
inline void softmax_row(const Scalar* x, Scalar* p, const std::uint8_t* vb, int T) {
  constexpr Scalar kNone = -std::numeric_limits<Scalar>::infinity();
  if (vb) {
    // The masked row in p first (p may be x), so the maximum reads one contiguous row.
    for (int j = 0; j < T; ++j) p[j] = vb[j] ? x[j] : kNone;
    const Scalar mx = lane_max<Scalar>(p, T, kNone);
    for (int j = 0; j < T; ++j) p[j] = vb[j] ? softmax_exp(p[j] - mx) : Scalar(0);
  } else {
    const Scalar mx = lane_max<Scalar>(x, T, kNone);
    for (int j = 0; j < T; ++j) p[j] = softmax_exp(x[j] - mx);
  }
  const Scalar sum = lane_sum<Scalar>(T, [&](int j) { return p[j]; });
  const Scalar inv = sum > Scalar(0) ? Scalar(1) / sum : Scalar(0);
  for (int j = 0; j < T; ++j) p[j] *= inv;
}
template <class Scalar>
void softmax_rows(const Scalar* in, Scalar* out, const std::uint8_t* valid, std::int64_t rows, std::int64_t rows_per_seq, int T) {
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) softmax_row(in + r * T, out + r * T, valid ? valid + (r / rows_per_seq) * T : nullptr, T);
}

// op(X) op(Y) over (b, h) with the heads read in place: the layer's MatMul builder
// (pld::heads_in_place_product) as a GemmShape.
inline GemmShape head_product(const AttentionShape& s, int m, int n, int k, bool ta, bool tb, HeadsOperand a, HeadsOperand b,
                              HeadsOperand c) {
  return gemm_shape(heads_in_place_product(s.batch, s.heads, m, n, k, ta, tb, a, b, c, false));
}

}  // namespace detail

// qkv (B*T, 3H): [q | k | v], head h in columns h*d .. h*d+d of each part.
// valid (B, T): 1 for real tokens, 0 for padding (null: all real). Keys that are padding get
// probability exactly 0. probs (B, heads, T, T) saved (before dropout); dropped (B, heads, T, T)
// scratch for the dropped probabilities (unused when dropout is 0); ctx (B*T, H) written.
template <class Scalar>
void attention_forward(Gemm& gemm, const Scalar* qkv, const std::uint8_t* valid, Scalar* probs, Scalar* dropped, Scalar* ctx,
                       const AttentionShape& s, float dropout, const DropoutKey& key) {
  const int T = s.seq, H = s.hidden, d = s.head_dim();
  const auto qkv_heads = packed_heads_operand(T, d, 3 * H), ctx_heads = packed_heads_operand(T, d, H), sq = square_heads_operand(s.heads, T);
  // scores = Q K^T / sqrt(d), into probs
  gemm.run<Scalar>(detail::head_product(s, T, T, d, false, true, qkv_heads, qkv_heads, sq), qkv, qkv + H, probs,
                   Scalar(1) / std::sqrt(static_cast<Scalar>(d)));
  detail::softmax_rows(probs, probs, valid, static_cast<std::int64_t>(s.batch) * s.heads * T, static_cast<std::int64_t>(s.heads) * T, T);
  const Scalar* pd = probs;
  if (dropout > 0.0f) {
    dropout_apply(probs, dropped, s.probs_size(), 0, dropout, key);
    pd = dropped;
  }
  // ctx = dropped P V
  gemm.run<Scalar>(detail::head_product(s, T, d, T, false, false, sq, qkv_heads, ctx_heads), pd, qkv + 2 * H, ctx);
}

// dctx (B*T, H) in; dqkv (B*T, 3H) written. dropped and dp: (B, heads, T, T) scratch.
template <class Scalar>
void attention_backward(Gemm& gemm, const Scalar* dctx, const Scalar* qkv, const Scalar* probs, Scalar* dropped, Scalar* dp,
                        Scalar* dqkv, const AttentionShape& s, float dropout, const DropoutKey& key) {
  const int T = s.seq, H = s.hidden, d = s.head_dim();
  const Scalar scale = Scalar(1) / std::sqrt(static_cast<Scalar>(d));
  const auto qkv_heads = packed_heads_operand(T, d, 3 * H), ctx_heads = packed_heads_operand(T, d, H), sq = square_heads_operand(s.heads, T);
  const Scalar* pd = probs;
  if (dropout > 0.0f) {
    dropout_apply(probs, dropped, s.probs_size(), 0, dropout, key);
    pd = dropped;
  }
  // dV = Pd^T dC; d(Pd) = dC V^T (dC converted once for both with bf16 products)
  if constexpr (std::is_same_v<Scalar, float>) gemm.keep_converted(dctx);
  gemm.run<Scalar>(detail::head_product(s, T, d, T, true, false, sq, ctx_heads, qkv_heads), pd, dctx, dqkv + 2 * H);
  gemm.run<Scalar>(detail::head_product(s, T, T, d, false, true, ctx_heads, qkv_heads, sq), dctx, qkv + 2 * H, dp);
  if constexpr (std::is_same_v<Scalar, float>) gemm.release_converted(dctx);
  if (dropout > 0.0f) {
    // dP = the mask times d(Pd) / (1 - p), the mask read off Pd instead of drawn again: where P is
    // not 0, Pd != 0 exactly when the element was kept; where P is 0, dS = P (dP - dot) is 0 and
    // dP does not matter (nor enters the dot). dS has the bits of redrawing the mask.
    const Scalar keep_scale = Scalar(1) / (Scalar(1) - static_cast<Scalar>(dropout));
    const std::int64_t n = static_cast<std::int64_t>(s.probs_size());
#pragma omp parallel for simd schedule(static)
    for (std::int64_t i = 0; i < n; ++i) dp[i] = dropped[i] != Scalar(0) ? dp[i] * keep_scale : Scalar(0);
  }
  // Softmax backward: dS = P o (dP - rowsum(dP o P)), then the 1/sqrt(d) of the scores. The dot
  // in lanes (pld/cpu/reduce.hpp): the same bits whatever the buffer's alignment.
  const std::int64_t rows = static_cast<std::int64_t>(s.batch) * s.heads * T;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const Scalar* p = probs + r * T;
    Scalar* g = dp + r * T;
    const Scalar dot = detail::lane_sum<Scalar>(T, [&](int j) { return g[j] * p[j]; });
    for (int j = 0; j < T; ++j) g[j] = p[j] * (g[j] - dot) * scale;
  }
  // dQ = dS K; dK = dS^T Q (dS converted once for both)
  if constexpr (std::is_same_v<Scalar, float>) gemm.keep_converted(dp);
  gemm.run<Scalar>(detail::head_product(s, T, d, T, false, false, sq, qkv_heads, qkv_heads), dp, qkv + H, dqkv);
  gemm.run<Scalar>(detail::head_product(s, T, d, T, true, false, sq, qkv_heads, qkv_heads), dp, qkv, dqkv + H);
  if constexpr (std::is_same_v<Scalar, float>) gemm.release_converted(dp);
}

}  // namespace pld::cpu
