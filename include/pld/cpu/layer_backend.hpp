// The CPU backend of the layer logic written once for every backend (pld/layer/): with it,
// pld::BasicPreLnLayer<T, cpu::LayerBackend<T>> (cpu::SharedPreLnLayer<T>) and
// pld::BasicLayerStack<T, cpu::LayerBackend<T>> (cpu::SharedLayerStack<T>) run the same
// algorithm as pld::cuda::PreLnLayer: the same buffers, products, passes and per-sample gathers.
//
// Storage T is float, double (gradient checks; arithmetic in T) or pld::cpu::bf16 (arithmetic,
// statistics and gradients in fp32). Products: pld::cpu::Gemm (oneDNN in fp32, or bf16 operands
// with fp32 accumulation, for float; bf16 operands read in place for bf16; Eigen for double), one
// per layer, the layer's Handle. Passes: pld::cpu's LayerNorm, GELU and
// Philox dropout (the masks are the other backends' bit for bit), OpenMP over rows. Work runs
// when called: the Stream is an empty tag.
//
// Status (issue 13, item 2, step 3 of docs/cpu_layer.md): Pre-LN and Post-LN; no fused GELU
// epilogue; with float storage, bf16 products convert every operand at every product
// (pld::cpu::PreLnLayer converts weights once per forward); the bf16 passes go through fp32
// copies. pld::cpu::PreLnLayer stays the CPU layer until step 4.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <type_traits>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/cpu/attention.hpp"
#include "pld/cpu/bf16.hpp"
#include "pld/cpu/dropout.hpp"
#include "pld/cpu/eigen_maps.hpp"
#include "pld/cpu/gelu.hpp"
#include "pld/cpu/gemm.hpp"
#include "pld/cpu/layer_norm.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/layer/basic_layer_stack.hpp"
#include "pld/layer/basic_pre_ln_layer.hpp"
#include "pld/layer/dropout_mask.hpp"
#include "pld/layer/head_shape.hpp"
#include "pld/layer/launch_counts.hpp"
#include "pld/layer/products.hpp"
#include "pld/layer/workspace.hpp"

namespace pld::cpu {

// Work on the CPU runs when it is called; the layer's stream argument is this empty tag.
struct Stream {};

// The layer's parameters and gradients: LayerParams, all zero at construction (the gradients
// must start at zero; parameters are set by the caller, as on the GPU).
template <class U>
struct ZeroedLayerParams : LayerParams<U> {
  explicit ZeroedLayerParams(const LayerConfig& c) : LayerParams<U>(c) { this->zero(); }
  using LayerParams<U>::operator=;
};

// A MatMul (pld/layer/products.hpp) as pld::cpu::Gemm's shape: both are row-major.
inline GemmShape gemm_shape(const MatMul& mm) {
  GemmShape s;
  s.m = mm.m;
  s.n = mm.n;
  s.k = mm.k;
  s.trans_a = mm.trans_x;
  s.trans_b = mm.trans_y;
  s.lda = mm.ldx;
  s.ldb = mm.ldy;
  s.ldc = mm.ldd;
  // One batch dimension, the inner one; the outer (size 1) gets the stride a dense layout would
  // have: oneDNN picks its reference kernel for zero strides.
  s.batch = {1, mm.batch};
  s.a_batch = {mm.stride_x * mm.batch, mm.stride_x};
  s.b_batch = {mm.stride_y * mm.batch, mm.stride_y};
  s.c_batch = {mm.stride_d * mm.batch, mm.stride_d};
  return s;
}

// One MatMul on the layer's Gemm. Storage float or double: Gemm::run in that type; bf16:
// Gemm::run_bf16, the operands read in place, D bf16 or (accum_out) fp32, the bias widened.
template <class T>
class GemmPlan {
 public:
  using Acc = std::conditional_t<std::is_same<T, bf16>::value, float, T>;
  GemmPlan(Gemm&, const MatMul& mm) : mm_((mm.check(), mm)), s_(gemm_shape(mm)) {
    if (mm.epilogue == Epilogue::bias_gelu_aux || mm.epilogue == Epilogue::dgelu)
      pld::detail::throw_error("cpu::LayerBackend: the GELU epilogues are not implemented (fuses_gelu() is false)");
  }
  const MatMul& matmul() const { return mm_; }
  const GemmShape& shape() const { return s_; }

  // D = alpha op(X) op(Y) + beta D [+ bias]; beta is 0 or 1 (what the layer uses).
  void run(Gemm& gemm, Acc alpha, const void* x, const void* y, Acc beta, void* d, const void* bias, const void*, void*, Stream) {
    if (beta != Acc(0) && beta != Acc(1)) pld::detail::throw_error("cpu::LayerBackend: a product's beta must be 0 or 1, got ", beta);
    const bool with_bias = mm_.epilogue == Epilogue::bias;
    if constexpr (std::is_same<T, bf16>::value) {
      if (with_bias) {
        bias_.resize(static_cast<std::size_t>(mm_.n));
        widen(static_cast<const bf16*>(bias), bias_.data(), bias_.size());
      }
      gemm.run_bf16(s_, static_cast<const bf16*>(x), static_cast<const bf16*>(y), d, mm_.accum_out, alpha, beta == 1.0f,
                    with_bias ? bias_.data() : nullptr);
    } else {
      gemm.run<T>(s_, static_cast<const T*>(x), static_cast<const T*>(y), static_cast<T*>(d), alpha, beta == T(1),
                  with_bias ? static_cast<const T*>(bias) : nullptr);
    }
  }

 private:
  MatMul mm_;
  GemmShape s_;
  std::vector<float> bias_;  // bf16: the bias widened
};

// Host memory with the workspace's alignment (a stack's arena); contents not kept across resize.
class AlignedBuffer {
 public:
  void resize(std::size_t bytes) {
    if (bytes == bytes_) return;
    mem_.reset(bytes ? new unsigned char[bytes + kWorkspaceAlign] : nullptr);
    bytes_ = bytes;
  }
  void* data() const {
    if (!mem_) return nullptr;
    const auto a = reinterpret_cast<std::uintptr_t>(mem_.get());
    return mem_.get() + (kWorkspaceAlign - a % kWorkspaceAlign) % kWorkspaceAlign;
  }
  std::size_t bytes() const { return bytes_; }

 private:
  std::unique_ptr<unsigned char[]> mem_;
  std::size_t bytes_ = 0;
};

// The per-sample row indices are read where they are (host memory).
class RowIndices {
 public:
  int* reserve(std::size_t n) {
    if (v_.size() < n) v_.resize(n);
    return v_.data();
  }
  void copied(Stream) {}

 private:
  std::vector<int> v_;
};

namespace detail {
// Rows of n elements: dst[k] = src[index[k]] (gather) or dst[index[k]] = src[k] (scatter).
template <class E>
void gather_rows(const E* src, const int* index, int rows, std::int64_t n, E* dst) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int k = 0; k < rows; ++k)
    std::memcpy(dst + k * n, src + static_cast<std::int64_t>(index[k]) * n, static_cast<std::size_t>(n) * sizeof(E));
}
template <class E>
void scatter_rows(const E* src, const int* index, int rows, std::int64_t n, E* dst) {
#pragma omp parallel for schedule(static) if (rows * n > 65536)
  for (int k = 0; k < rows; ++k)
    std::memcpy(dst + static_cast<std::int64_t>(index[k]) * n, src + k * n, static_cast<std::size_t>(n) * sizeof(E));
}
// Packed (B*T, parts*H) rows <-> head-major (parts, B, heads, T, d), d elements at a time.
template <bool kToHeads, class E>
void move_heads(const E* from, E* to, const HeadShape& s) {
  const std::int64_t rows = static_cast<std::int64_t>(s.batch) * s.seq;
  const std::int64_t ld = static_cast<std::int64_t>(s.parts) * s.hidden();
#pragma omp parallel for schedule(static) if (rows * ld > 65536)
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t b = r / s.seq, t = r % s.seq;
    for (int part = 0; part < s.parts; ++part)
      for (int h = 0; h < s.heads; ++h) {
        const std::int64_t packed = r * ld + static_cast<std::int64_t>(part) * s.hidden() + static_cast<std::int64_t>(h) * s.dim;
        const std::int64_t heads = (((static_cast<std::int64_t>(part) * s.batch + b) * s.heads + h) * s.seq + t) * s.dim;
        if (kToHeads) std::memcpy(to + heads, from + packed, static_cast<std::size_t>(s.dim) * sizeof(E));
        else std::memcpy(to + packed, from + heads, static_cast<std::size_t>(s.dim) * sizeof(E));
      }
  }
}
}  // namespace detail

// What every storage type's backend shares: the stream tag, memory, the Gemm, and the passes that
// only move elements (copies, row gathers, the head split).
template <class T>
struct MovePasses {
  using Stream = pld::cpu::Stream;
  using Handle = Gemm;
  using RowStaging = RowIndices;
  using Buffer = AlignedBuffer;
  using LC = LaunchCounts;
  template <class U>
  using Params = ZeroedLayerParams<U>;

  static ScratchNeeds scratch_needs(std::int64_t, std::int64_t) { return {}; }  // products and sums need none
  static bool fuses_gelu(GeluForm, int) { return false; }
  static void copy(void* dst, const void* src, std::size_t bytes, Stream) { std::memmove(dst, src, bytes); }
  static void copy_from_host(void* dst, const void* src, std::size_t bytes, Stream) { std::memcpy(dst, src, bytes); }
  static void gather_rows(const T* src, const int* index, int rows, std::int64_t n, T* dst, Stream, LC& c) {
    detail::gather_rows(src, index, rows, n, dst);
    ++c.kernels;
  }
  static void gather_valid(const std::uint8_t* src, const int* index, int rows, std::int64_t n, std::uint8_t* dst, Stream, LC& c) {
    detail::gather_rows(src, index, rows, n, dst);
    ++c.kernels;
  }
  static void scatter_rows(const T* src, const int* index, int rows, std::int64_t n, T* dst, Stream, LC& c) {
    detail::scatter_rows(src, index, rows, n, dst);
    ++c.kernels;
  }

  static void split_heads(const T* packed, T* heads, const HeadShape& s, Stream, LC& c) {
    detail::move_heads<true>(packed, heads, s);
    ++c.kernels;
  }
  static void merge_heads(const T* heads, T* packed, const HeadShape& s, Stream, LC& c) {
    detail::move_heads<false>(heads, packed, s);
    ++c.kernels;
  }
};

template <class T>
struct LayerBackend : MovePasses<T> {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value, "cpu::LayerBackend stores float, double or bf16");
  using Stream = pld::cpu::Stream;
  using LC = LaunchCounts;
  using Accum = T;
  template <class U>
  using Plan = GemmPlan<U>;

  static void check_problem(const LayerConfig& c, int batch, int seq) {
    c.validate();
    if (batch <= 0) pld::detail::throw_error("cpu::SharedPreLnLayer: batch must be > 0, got ", batch);
    if (seq <= 0) pld::detail::throw_error("cpu::SharedPreLnLayer: sequence length T must be > 0, got ", seq);
  }


  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int rows, int cols, double eps,
                                 Stream, LC& c) {
    pld::cpu::layer_norm_forward<T>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
    ++c.kernels;
  }
  // dx = LayerNorm'(dy) [+ residual]; dgamma, dbeta accumulate.
  static void layer_norm_backward(const T* dy, const T* x, const T* mean, const T* rstd, const T* gamma, const T* residual, T* dx,
                                  T* dgamma, T* dbeta, int rows, int cols, T*, Stream, LC& c) {
    pld::cpu::layer_norm_backward<T>(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols);
    if (residual) {
      const std::int64_t n = static_cast<std::int64_t>(rows) * cols;
#pragma omp parallel for simd schedule(static) if (n > 65536)
      for (std::int64_t i = 0; i < n; ++i) dx[i] += residual[i];
    }
    ++c.kernels;
  }
  // h = x + g Dropout(t); y = LayerNorm(h).
  static void residual_layer_norm(const T* x, const T* t, T* h, const T* gamma, const T* beta, T* y, T* mean, T* rstd, int rows,
                                  int cols, T g, const DropoutMask& m, double eps, Stream s, LC& c) {
    LC ignore;
    residual_dropout(x, t, h, static_cast<std::int64_t>(rows) * cols, g, m, s, ignore);
    pld::cpu::layer_norm_forward<T>(h, gamma, beta, y, mean, rstd, rows, cols, eps);
    ++c.kernels;
  }
  // out = x + g Dropout(t) (x null: 0); out must not alias x.
  static void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, T g, const DropoutMask& m, Stream, LC& c) {
    if (x && x == out) pld::detail::throw_error("cpu::LayerBackend::residual_dropout: out aliases x");
    dropout_apply(t, out, static_cast<std::size_t>(n), 0, m.rate, key(m));
    if (x) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
      for (std::int64_t i = 0; i < n; ++i) out[i] = x[i] + g * out[i];
    } else {
#pragma omp parallel for simd schedule(static) if (n > 65536)
      for (std::int64_t i = 0; i < n; ++i) out[i] = g * out[i];
    }
    ++c.kernels;
  }
  static void gelu_forward(const T* pre, T* act, std::int64_t n, GeluForm form, Stream, LC& c) {
    pld::cpu::gelu_forward<T>(pre, act, static_cast<std::size_t>(n), form);
    ++c.kernels;
  }
  static void gelu_backward(const T* dact, const T* pre, T* dpre, std::int64_t n, GeluForm form, Stream, LC& c) {
    pld::cpu::gelu_backward<T>(dact, pre, dpre, static_cast<std::size_t>(n), form);
    ++c.kernels;
  }


  // probs = softmax over the real keys of each row (a row with none: all 0); dropped = Dropout(probs).
  static void softmax_forward(const T* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                              const DropoutMask& m, Stream, LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    detail::softmax_rows(scores, probs, valid, rows, static_cast<std::int64_t>(heads) * seq, seq);
    if (dropped) dropout_apply(probs, dropped, static_cast<std::size_t>(rows * seq), 0, m.rate, key(m));
    ++c.kernels;
  }
  // ds = P o (dP - rowsum(dP o P)) * scale with dP = Dropout(d(dropped P)); dpd is overwritten.
  static void softmax_backward(T* dpd, const T* probs, T* ds, int batch, int heads, int seq, T scale, const DropoutMask& m, Stream,
                               LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    if (m.active()) dropout_apply(dpd, dpd, static_cast<std::size_t>(rows * seq), 0, m.rate, key(m));
#pragma omp parallel for schedule(static)
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* p = probs + r * seq;
      const T* g = dpd + r * seq;
      T* out = ds + r * seq;
      T dot = 0;
      for (int j = 0; j < seq; ++j) dot += g[j] * p[j];
      for (int j = 0; j < seq; ++j) out[j] = p[j] * (g[j] - dot) * scale;
    }
    ++c.kernels;
  }
  static void dropout_probs(const T* probs, T* dropped, std::int64_t n, const DropoutMask& m, Stream, LC& c) {
    dropout_apply(probs, dropped, static_cast<std::size_t>(n), 0, m.rate, key(m));
    ++c.kernels;
  }
  // out (cols) += the column sums of a (rows, cols), in row order (the same bits for any threads).
  static void column_sums(const T* a, int rows, int cols, T* out, T*, Stream, LC& c) {
    add_column_sums<T>(a, nullptr, rows, cols, out);
    ++c.kernels;
  }

  static DropoutKey key(const DropoutMask& m) {
    DropoutKey k;
    k.seed = m.seed;
    k.step = static_cast<std::int64_t>(m.step);
    k.layer = m.layer;
    k.site = static_cast<DropoutSite>(m.site);
    return k;
  }
};

// bf16 storage: activations, parameters and the products' operands in bf16, statistics, scores
// and gradients in fp32. The products read bf16 in place (Gemm::run_bf16: no conversion); each
// pass widens its bf16 inputs to fp32, runs the float backend's pass and rounds what it stores
// to bf16, so every stored value is rounded once, where the CUDA kernels round.
template <>
struct LayerBackend<bf16> : MovePasses<bf16> {
  using F = LayerBackend<float>;
  using Stream = pld::cpu::Stream;
  using LC = LaunchCounts;
  using T = bf16;
  using Accum = float;
  template <class U>
  using Plan = GemmPlan<U>;

  static void check_problem(const LayerConfig& c, int batch, int seq) {
    F::check_problem(c, batch, seq);
    if (!has_onednn())
      pld::detail::throw_error("cpu::SharedPreLnLayer<bf16>: bf16 storage needs oneDNN (this build of pld::cpu has none)");
  }


  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows, int cols, double eps,
                                 Stream s, LC& c) {
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    float* Y = scratch(3, n);
    F::layer_norm_forward(wide(x, n, 0), wide(gamma, cols, 1), wide(beta, cols, 2), Y, mean, rstd, rows, cols, eps, s, c);
    narrow(Y, y, n);
  }
  static void layer_norm_backward(const T* dy, const T* x, const float* mean, const float* rstd, const T* gamma, const T* residual, T* dx,
                                  float* dgamma, float* dbeta, int rows, int cols, float* scratch_sums, Stream s, LC& c) {
    const std::size_t n = static_cast<std::size_t>(rows) * cols;
    float* DX = scratch(4, n);
    F::layer_norm_backward(wide(dy, n, 0), wide(x, n, 1), mean, rstd, wide(gamma, cols, 2), residual ? wide(residual, n, 3) : nullptr, DX,
                           dgamma, dbeta, rows, cols, scratch_sums, s, c);
    narrow(DX, dx, n);
  }
  // h = x + g Dropout(t) (stored, then read back rounded, as the kernel does); y = LayerNorm(h).
  static void residual_layer_norm(const T* x, const T* t, T* h, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows,
                                  int cols, float g, const DropoutMask& m, double eps, Stream s, LC& c) {
    LC ignore;
    residual_dropout(x, t, h, static_cast<std::int64_t>(rows) * cols, g, m, s, ignore);
    layer_norm_forward(h, gamma, beta, y, mean, rstd, rows, cols, eps, s, ignore);
    ++c.kernels;
  }
  static void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, float g, const DropoutMask& m, Stream s, LC& c) {
    const auto N = static_cast<std::size_t>(n);
    float* O = scratch(4, N);
    F::residual_dropout(x ? wide(x, N, 0) : nullptr, wide(t, N, 1), O, n, g, m, s, c);
    narrow(O, out, N);
  }
  static void gelu_forward(const T* pre, T* act, std::int64_t n, GeluForm form, Stream s, LC& c) {
    const auto N = static_cast<std::size_t>(n);
    float* A = scratch(4, N);
    F::gelu_forward(wide(pre, N, 0), A, n, form, s, c);
    narrow(A, act, N);
  }
  static void gelu_backward(const T* dact, const T* pre, T* dpre, std::int64_t n, GeluForm form, Stream s, LC& c) {
    const auto N = static_cast<std::size_t>(n);
    float* D = scratch(4, N);
    F::gelu_backward(wide(dact, N, 0), wide(pre, N, 1), D, n, form, s, c);
    narrow(D, dpre, N);
  }
  // The probabilities are stored in bf16 and the dropped ones made from the stored values.
  static void softmax_forward(const float* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                              const DropoutMask& m, Stream s, LC& c) {
    const std::size_t n = static_cast<std::size_t>(batch) * heads * seq * seq;
    float* P = scratch(4, n);
    F::softmax_forward(scores, valid, P, nullptr, batch, heads, seq, m, s, c);
    narrow(P, probs, n);
    if (dropped) {
      LC ignore;
      dropout_probs(probs, dropped, static_cast<std::int64_t>(n), m, s, ignore);
    }
  }
  static void softmax_backward(float* dpd, const T* probs, T* ds, int batch, int heads, int seq, float scale, const DropoutMask& m,
                               Stream s, LC& c) {
    const std::size_t n = static_cast<std::size_t>(batch) * heads * seq * seq;
    float* DS = scratch(4, n);
    F::softmax_backward(dpd, wide(probs, n, 0), DS, batch, heads, seq, scale, m, s, c);
    narrow(DS, ds, n);
  }
  static void dropout_probs(const T* probs, T* dropped, std::int64_t n, const DropoutMask& m, Stream s, LC& c) {
    const auto N = static_cast<std::size_t>(n);
    float* D = scratch(4, N);
    F::dropout_probs(wide(probs, N, 0), D, n, m, s, c);
    narrow(D, dropped, N);
  }
  static void column_sums(const T* a, int rows, int cols, float* out, float* scratch_sums, Stream s, LC& c) {
    F::column_sums(wide(a, static_cast<std::size_t>(rows) * cols, 0), rows, cols, out, scratch_sums, s, c);
  }

 private:
  // Per-thread fp32 scratch, slot i: the widened inputs (0-3) and the pass's fp32 output (4).
  static float* scratch(int slot, std::size_t n) {
    thread_local std::vector<float> v[5];
    auto& b = v[slot];
    if (b.size() < n) b.resize(n);
    return b.data();
  }
  static const float* wide(const T* in, std::size_t n, int slot) {
    float* out = scratch(slot, n);
    widen(in, out, n);
    return out;
  }
};

// The shared layer logic and stack on the CPU.
template <class T>
using SharedPreLnLayer = pld::BasicPreLnLayer<T, LayerBackend<T>>;
template <class T>
using SharedLayerStack = pld::BasicLayerStack<T, LayerBackend<T>>;

}  // namespace pld::cpu
