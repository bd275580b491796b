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
// Status (issue 13, item 2, docs/cpu_layer.md): Pre-LN and Post-LN; no fused GELU epilogue; with
// float storage, bf16 products convert both operands at every product (the CPU layer before
// session 11 kept converted copies for the step). pld::cpu::PreLnLayer (pre_ln_layer.hpp) is this
// layer owning its workspace; pld-bert's CPU model runs it in bf16 storage with bf16 products.
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
#include "pld/cpu/reduce.hpp"
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

// One MatMul on the layer's Gemm. Storage float or double: Gemm::run in that type; bf16:
// Gemm::run_bf16, the operands read in place, D bf16 or (accum_out) fp32, the bias widened.
template <class T>
class GemmPlan {
 public:
  using Acc = arith_t<T>;
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
  // At least `bytes` (reallocated only to grow, contents not kept): for workspaces whose size
  // changes from step to step (per-sample plans).
  void grow(std::size_t bytes) {
    if (bytes > bytes_) resize(bytes);
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

// The passes, written once over the storage type T (float, double or bf16) with the arithmetic,
// statistics and gradients in Accum = arith_t<T> (float for bf16). pld::cpu's kernels read and
// write T directly: a bf16 input is widened where it is loaded and a bf16 output rounded where
// it is stored, so each stored value is rounded once, where the CUDA kernels round, and a bf16
// pass moves half the bytes of a float one (no fp32 copies in between).
template <class T>
struct LayerBackend {
  static_assert(std::is_same<T, float>::value || std::is_same<T, double>::value || std::is_same<T, bf16>::value,
                "cpu::LayerBackend stores float, double or bf16");
  using Stream = pld::cpu::Stream;
  using Handle = Gemm;
  using RowStaging = RowIndices;
  using Buffer = AlignedBuffer;
  using LC = LaunchCounts;
  using Accum = arith_t<T>;
  using A = Accum;
  template <class U>
  using Params = ZeroedLayerParams<U>;
  template <class U>
  using Plan = GemmPlan<U>;

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

  static void check_problem(const LayerConfig& c, int batch, int seq) {
    c.validate();
    if (batch <= 0) pld::detail::throw_error("cpu::SharedPreLnLayer: batch must be > 0, got ", batch);
    if (seq <= 0) pld::detail::throw_error("cpu::SharedPreLnLayer: sequence length T must be > 0, got ", seq);
    if (std::is_same<T, bf16>::value && !has_onednn())
      pld::detail::throw_error("cpu::SharedPreLnLayer<bf16>: bf16 storage needs oneDNN (this build of pld::cpu has none)");
  }

  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, A* mean, A* rstd, int rows, int cols, double eps,
                                 Stream, LC& c) {
    pld::cpu::layer_norm_forward<T>(x, gamma, beta, y, mean, rstd, rows, cols, eps);
    ++c.kernels;
  }
  // dx = LayerNorm'(dy) [+ residual]; dgamma, dbeta accumulate.
  static void layer_norm_backward(const T* dy, const T* x, const A* mean, const A* rstd, const T* gamma, const T* residual, T* dx,
                                  A* dgamma, A* dbeta, int rows, int cols, A*, Stream, LC& c) {
    pld::cpu::layer_norm_backward<T>(dy, x, mean, rstd, gamma, dx, dgamma, dbeta, rows, cols, residual);
    ++c.kernels;
  }
  // h = x + g Dropout(t) (stored, then read back: rounded in bf16, as the CUDA kernel does);
  // y = LayerNorm(h).
  static void residual_layer_norm(const T* x, const T* t, T* h, const T* gamma, const T* beta, T* y, A* mean, A* rstd, int rows,
                                  int cols, A g, const DropoutMask& m, double eps, Stream s, LC& c) {
    LC ignore;
    residual_dropout(x, t, h, static_cast<std::int64_t>(rows) * cols, g, m, s, ignore);
    pld::cpu::layer_norm_forward<T>(h, gamma, beta, y, mean, rstd, rows, cols, eps);
    ++c.kernels;
  }
  // out = x + g Dropout(t) (x null: 0); out must not alias x. In chunks of whole dropout groups,
  // the dropped t kept in Accum until the sum is stored.
  static void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, A g, const DropoutMask& m, Stream, LC& c) {
    if (x && x == out) pld::detail::throw_error("cpu::LayerBackend::residual_dropout: out aliases x");
    constexpr std::int64_t kChunk = 2048;  // a multiple of 64: the dropout's vectorized groups
    const std::int64_t chunks = (n + kChunk - 1) / kChunk;
    const DropoutKey k = key(m);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t o = ch * kChunk, len = std::min(kChunk, n - o);
      alignas(64) A d[kChunk];
      detail::dropout_span(t + o, d, static_cast<std::size_t>(len), static_cast<std::size_t>(m.offset) + static_cast<std::size_t>(o), m.rate, k);
      T* out_c = out + o;
      // No `omp simd` here: with it GCC 12 makes the bf16 temporaries a "simd array" and leaves
      // the loop scalar (10x slower); without it, it vectorizes.
      if (x) {
        const T* x_c = x + o;
        for (std::int64_t i = 0; i < len; ++i) out_c[i] = T(A(x_c[i]) + g * d[i]);
      } else {
        for (std::int64_t i = 0; i < len; ++i) out_c[i] = T(g * d[i]);
      }
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
  // The layer keeps GELU's derivative instead of its input (pld::BasicPreLnLayer asks for
  // kKeepsGeluDerivative): the forward computes it with the activation, sharing the exponential,
  // and the backward is one product instead of erf and exp again.
  static constexpr bool kKeepsGeluDerivative = true;
  // The attention's products read the heads in place inside the packed q|k|v and context rows
  // (two batch dimensions, which oneDNN takes): no split_heads or merge_heads copies.
  static constexpr bool kReadsHeadsInPlace = true;
  // act = GELU(pre), then pre = GELU'(pre), in one pass.
  static void gelu_forward_keep(T* pre, T* act, std::int64_t n, GeluForm form, Stream, LC& c) {
    pld::cpu::gelu_forward_with_derivative<T>(pre, act, pre, static_cast<std::size_t>(n), form);
    ++c.kernels;
  }
  // dpre = dact * deriv, deriv what gelu_forward_keep left.
  static void gelu_backward_given(const T* dact, const T* deriv, T* dpre, std::int64_t n, Stream, LC& c) {
    pld::cpu::gelu_backward_given<T>(dact, deriv, dpre, static_cast<std::size_t>(n));
    ++c.kernels;
  }

  // probs = softmax over the real keys of each row (a row with none: all 0), rounded once where
  // stored; dropped = Dropout(probs) made from the stored probabilities. (Masking each row, or
  // each chunk of 64 rows, as soon as its softmax is written was tried in sessions 13 and 19: the
  // same bits, no gain on a Zen 5 at T = 128 (session 19, BERT-mini: 0.85 ms against 0.82).)
  static void softmax_forward(const A* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                              const DropoutMask& m, Stream, LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    const std::int64_t rows_per_seq = static_cast<std::int64_t>(heads) * seq;
#pragma omp parallel
    {
      std::vector<A> row(std::is_same<T, A>::value ? 0 : static_cast<std::size_t>(seq));  // bf16: the row in Accum
#pragma omp for schedule(static)
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::uint8_t* vb = valid ? valid + (r / rows_per_seq) * seq : nullptr;
        if constexpr (std::is_same<T, A>::value) {
          detail::softmax_row(scores + r * seq, probs + r * seq, vb, seq);
        } else {
          detail::softmax_row(scores + r * seq, row.data(), vb, seq);
          T* p = probs + r * seq;
          for (int j = 0; j < seq; ++j) p[j] = T(row[static_cast<std::size_t>(j)]);
        }
      }
    }
    if (dropped) dropout_apply(probs, dropped, static_cast<std::size_t>(rows * seq), static_cast<std::size_t>(m.offset), m.rate, key(m));
    ++c.kernels;
  }
  // ds = P o (dP - rowsum(dP o P)) * scale with dP = Dropout(d(dropped P)); dpd is overwritten.
  // `dropped`: the dropped probabilities (null without dropout; may be ds itself). The mask is
  // read from it instead of drawn again: where P != 0, Dropout kept the element exactly when
  // dropped != 0 (P * 1/(1-rate) does not underflow); where P == 0 the element adds nothing to
  // ds either way. Without it the mask is drawn (the same bits but for the sign of a zero ds
  // where P == 0).
  static void softmax_backward(A* dpd, const T* probs, const T* dropped, T* ds, int batch, int heads, int seq, A scale,
                               const DropoutMask& m, Stream, LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    // Chunks of whole rows of about 8192 elements: the drawn mask's stream is ragged only at a
    // chunk's ends (whole 64-element Philox groups when seq is a multiple of 8).
    const std::int64_t per = std::max<std::int64_t>(1, 8192 / std::max(seq, 1)), chunks = (rows + per - 1) / per;
    const DropoutKey k = key(m);
    const A keep_scale = A(1) / (A(1) - static_cast<A>(m.rate));  // dropout_span's scale
#pragma omp parallel for schedule(static)
    for (std::int64_t ch = 0; ch < chunks; ++ch) {
      const std::int64_t r0 = ch * per, r1 = std::min(rows, r0 + per);
      if (m.active() && !dropped)
        detail::dropout_span(dpd + r0 * seq, dpd + r0 * seq, static_cast<std::size_t>((r1 - r0) * seq),
                             static_cast<std::size_t>(m.offset) + static_cast<std::size_t>(r0 * seq), m.rate, k);
      for (std::int64_t r = r0; r < r1; ++r) {
        const T* p = probs + r * seq;
        A* g = dpd + r * seq;
        T* out = ds + r * seq;
        if (m.active() && dropped) {
          const T* pd = dropped + r * seq;
          for (int j = 0; j < seq; ++j) g[j] = A(pd[j]) != A(0) ? g[j] * keep_scale : A(0);
        }
        const A dot = detail::lane_sum<A>(seq, [&](int j) { return g[j] * A(p[j]); });
        for (int j = 0; j < seq; ++j) out[j] = T(A(p[j]) * (g[j] - dot) * scale);
      }
    }
    ++c.kernels;
  }
  static void dropout_probs(const T* probs, T* dropped, std::int64_t n, const DropoutMask& m, Stream, LC& c) {
    dropout_apply(probs, dropped, static_cast<std::size_t>(n), static_cast<std::size_t>(m.offset), m.rate, key(m));
    ++c.kernels;
  }
  // out (cols) += the column sums of a (rows, cols), in row order (the same bits for any threads).
  static void column_sums(const T* a, int rows, int cols, A* out, A*, Stream, LC& c) {
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

// The shared layer logic and stack on the CPU.
template <class T>
using SharedPreLnLayer = pld::BasicPreLnLayer<T, LayerBackend<T>>;
template <class T>
using SharedLayerStack = pld::BasicLayerStack<T, LayerBackend<T>>;

}  // namespace pld::cpu
