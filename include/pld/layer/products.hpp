// The matrix products of a layer, described by what they compute rather than by a library's
// conventions, so the layer's logic (basic_pre_ln_layer.hpp) is written once over backends: each
// backend's Plan translates a MatMul (cuBLASLt's column-major problem in pld/cuda/blas_lt.hpp;
// the tests' host loops; a CPU library's primitive).
//
// Row-major throughout, weights (out, in) as in PyTorch. A MatMul is
//   D (m x n) = alpha op(X) op(Y) + beta D,   op(X): m x k,  op(Y): k x n,
// run as plan.run(alpha, X, Y, beta, D, bias, aux, ...), over `batch` independent matrices
// (matrix i of each operand starts i * stride elements after the first), or batch x batch2 of
// them (matrix (i, j) at i * stride + j * stride2: attention heads read in place inside packed
// rows, for backends that declare kReadsHeadsInPlace; cuBLASLt has one batch stride). X and Y are in the
// layer's storage type; D is in the storage type or (accum_out: weight gradients, attention
// scores) in the backend's accumulation type, fp32 (double for a double backend). Arithmetic is
// in the accumulation type or wider. The builders below make the products a Transformer layer needs.
#pragma once

#include <cstdint>

#include "pld/core/error.hpp"

namespace pld {

// What the product does after the multiply. bias: one value per column of D (the output
// feature). bias_gelu_aux: bias, then GELU (tanh form); the GELU input is written to `aux` (D's
// shape, aux_ld elements per row) for the backward. dgelu: D *= GELU'(aux) for the aux the
// forward wrote.
enum class Epilogue { none, bias, bias_gelu_aux, dgelu };

struct MatMul {
  int m = 0, n = 0, k = 0;
  bool trans_x = false, trans_y = false;  // the operand is stored transposed (k x m, n x k)
  std::int64_t ldx = 0, ldy = 0, ldd = 0;  // elements per stored row
  int batch = 1;
  std::int64_t stride_x = 0, stride_y = 0, stride_d = 0;
  int batch2 = 1;  // an inner second batch dimension (1: none)
  std::int64_t stride2_x = 0, stride2_y = 0, stride2_d = 0;
  bool accum_out = false;  // D (and beta's C) in the accumulation type rather than the storage type
  Epilogue epilogue = Epilogue::none;
  std::int64_t aux_ld = 0;
  // Alignment in bytes every X, Y and D pointer of run() has (at most 256); a batched operand's
  // is further limited by its stride. Backends may pick vectorised kernels from it.
  int align_bytes = 256;

  int rows_x() const { return trans_x ? k : m; }  // X as stored
  int cols_x() const { return trans_x ? m : k; }
  int rows_y() const { return trans_y ? n : k; }  // Y as stored
  int cols_y() const { return trans_y ? k : n; }

  // Throws pld::Error naming the first thing that is not a valid product.
  void check() const {
    if (m <= 0 || n <= 0 || k <= 0) pld::detail::throw_error("GEMM: m, n, k must be > 0, got ", m, ", ", n, ", ", k);
    if (batch <= 0 || batch2 <= 0) pld::detail::throw_error("GEMM: batch must be > 0, got ", batch, " x ", batch2);
    if (ldx < cols_x() || ldy < cols_y() || ldd < n)
      pld::detail::throw_error("GEMM: leading dimension too small (ldx ", ldx, " ldy ", ldy, " ldd ", ldd, " for m ", m, " n ", n,
                               " k ", k, ")");
    if ((epilogue == Epilogue::bias_gelu_aux || epilogue == Epilogue::dgelu) && (aux_ld % 8 != 0 || aux_ld < n))
      pld::detail::throw_error("GEMM: the GELU auxiliary leading dimension must be a multiple of 8 and >= n, got ", aux_ld);
    if (epilogue != Epilogue::none && (batch != 1 || batch2 != 1))
      pld::detail::throw_error("GEMM: epilogues are used on unbatched products only");
  }
};

// y (rows, out) = x (rows, in) W^T [+ b]: run(x, W).
inline MatMul linear_product(int rows, int in, int out) {
  MatMul p;
  p.m = rows; p.n = out; p.k = in;
  p.trans_y = true;
  p.ldx = in; p.ldy = in; p.ldd = out;
  return p;
}
// dx (rows, in) = dy (rows, out) W: run(dy, W).
inline MatMul linear_dgrad_product(int rows, int in, int out) {
  MatMul p;
  p.m = rows; p.n = in; p.k = out;
  p.ldx = out; p.ldy = in; p.ldd = in;
  return p;
}
// dW (out, in) += dy^T x in the accumulation type: run(dy, x) with beta 1.
inline MatMul linear_wgrad_product(int rows, int in, int out) {
  MatMul p;
  p.m = out; p.n = in; p.k = rows;
  p.trans_x = true;
  p.ldx = out; p.ldy = in; p.ldd = in;
  p.accum_out = true;
  return p;
}

// Per-head products over `batch` row-major (seq x dim) head matrices, each seq*dim apart, and
// (seq x seq) score-like matrices, each seq*seq apart.
// D (seq x seq) = A B^T, e.g. scores = Q K^T, d(P) = dC V^T: run(A, B).
inline MatMul heads_abt_product(int batch, int seq, int dim, bool accum_out) {
  MatMul p;
  p.m = seq; p.n = seq; p.k = dim;
  p.trans_y = true;
  p.ldx = dim; p.ldy = dim; p.ldd = seq;
  p.batch = batch;
  p.stride_x = p.stride_y = static_cast<std::int64_t>(seq) * dim;
  p.stride_d = static_cast<std::int64_t>(seq) * seq;
  p.accum_out = accum_out;
  return p;
}
// D (seq x dim) = P V, e.g. ctx = P V, dQ = dS K: run(P, V).
inline MatMul heads_pv_product(int batch, int seq, int dim) {
  MatMul p;
  p.m = seq; p.n = dim; p.k = seq;
  p.ldx = seq; p.ldy = dim; p.ldd = dim;
  p.batch = batch;
  p.stride_x = static_cast<std::int64_t>(seq) * seq;
  p.stride_y = p.stride_d = static_cast<std::int64_t>(seq) * dim;
  return p;
}
// D (seq x dim) = P^T G, e.g. dV = P^T dC, dK = dS^T Q: run(P, G).
inline MatMul heads_ptv_product(int batch, int seq, int dim) {
  MatMul p = heads_pv_product(batch, seq, dim);
  p.trans_x = true;
  return p;
}

// Per-head products over (batch, heads) with the heads read in place: an operand is either
// packed rows (batch * seq rows of `ld` elements; head h at column h * dim, the caller's pointer
// already at the q, k or v part) or a contiguous (batch, heads, seq, seq) score-like tensor.
struct HeadsOperand {
  std::int64_t ld, per_batch, per_head;
};
inline HeadsOperand packed_heads_operand(int seq, int dim, std::int64_t ld) { return {ld, seq * ld, dim}; }
inline HeadsOperand square_heads_operand(int heads, int seq) {
  const std::int64_t tt = static_cast<std::int64_t>(seq) * seq;
  return {seq, heads * tt, tt};
}
// D = op(X) op(Y) for every (sequence, head): m x n, inner size k.
inline MatMul heads_in_place_product(int batch, int heads, int m, int n, int k, bool trans_x, bool trans_y, HeadsOperand x,
                                     HeadsOperand y, HeadsOperand d, bool accum_out) {
  MatMul p;
  p.m = m; p.n = n; p.k = k;
  p.trans_x = trans_x; p.trans_y = trans_y;
  p.ldx = x.ld; p.ldy = y.ld; p.ldd = d.ld;
  p.batch = batch;
  p.stride_x = x.per_batch; p.stride_y = y.per_batch; p.stride_d = d.per_batch;
  p.batch2 = heads;
  p.stride2_x = x.per_head; p.stride2_y = y.per_head; p.stride2_d = d.per_head;
  p.accum_out = accum_out;
  return p;
}

inline MatMul with_epilogue(MatMul p, Epilogue e, std::int64_t aux_ld = 0) {
  p.epilogue = e;
  p.aux_ld = aux_ld;
  return p;
}
inline MatMul with_alignment(MatMul p, int bytes) {
  p.align_bytes = bytes;
  return p;
}

// Largest power of two, at most 256, dividing `bytes` (0 divides by anything: 256).
inline std::uint32_t pow2_alignment(std::int64_t bytes) {
  std::uint32_t a = 256;
  while (a > 1 && bytes % a != 0) a /= 2;
  return a;
}

}  // namespace pld
