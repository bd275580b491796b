// The Transformer encoder layer, gate-aware, written once over backends, with the contract of
// pld::cpu::PreLnLayer: Pre-LN (LayerConfig::norm = pre, the default)
//   h = x + g * Dropout(Wo MHA(LN1(x), mask) + bo)
//   y = h + g * Dropout(W2 GELU(W1 LN2(h) + b1) + b2)
// or Post-LN (norm = post, BERT's original layer)
//   h = LN1(x + g * Dropout(Wo MHA(x, mask) + bo))
//   y = LN2(h + g * Dropout(W2 GELU(W1 h + b1) + b2))
// This header is the layer's logic only: which buffers (pld/layer/workspace.hpp), which products
// (pld::MatMul, pld/layer/products.hpp), which passes, in which order, and the per-sample gather
// and scatter of kept rows. What runs them is the Backend: pld::cuda::DeviceBackend
// (pld/cuda/pre_ln_layer.cuh: cuBLASLt and pld's CUDA kernels, the layer users get as
// pld::cuda::PreLnLayer<T>), or the tests' host backends (plain loops; the CUDA kernels on the
// SIMT emulator). Plain C++: no CUDA header.
//
// Storage T is the backend's: bf16 or fp16 for training on a GPU, float (and double, for
// gradient checks) on the CPU. Arithmetic, statistics and parameter gradients are in the
// backend's Accum type: fp32, or double for double storage. A dropped layer launches nothing
// and needs no workspace; launches() counts what a layer put on the stream, so tests can prove it.
//
// Use (the CUTLASS shape): sizes = workspace_sizes(batch, seq, step); the caller provides
// `saved` (kept from forward to backward) and `scratch`; forward(..., ws, stream);
// backward(..., ws, stream). Every pointer is the backend's memory except LayerStep::rows (host).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/layer/dropout_mask.hpp"
#include "pld/layer/head_shape.hpp"
#include "pld/layer/launch_counts.hpp"
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"
#include "pld/layer/products.hpp"
#include "pld/layer/workspace.hpp"

namespace pld {

namespace detail {
// Whether a backend keeps GELU's derivative in place of its input (Backend::kKeepsGeluDerivative:
// gelu_forward_keep and gelu_backward_given instead of gelu_forward and gelu_backward).
template <class B, class = void>
struct keeps_gelu_derivative : std::false_type {};
template <class B>
struct keeps_gelu_derivative<B, std::void_t<decltype(B::kKeepsGeluDerivative)>> : std::bool_constant<B::kKeepsGeluDerivative> {};
// Whether a backend's products read the attention heads in place inside the packed q|k|v and
// context rows (Backend::kReadsHeadsInPlace: MatMuls over (batch, heads), no split_heads or
// merge_heads copies).
template <class B, class = void>
struct reads_heads_in_place : std::false_type {};
template <class B>
struct reads_heads_in_place<B, std::void_t<decltype(B::kReadsHeadsInPlace)>> : std::bool_constant<B::kReadsHeadsInPlace> {};
}  // namespace detail

// Backend provides (pld::cuda::DeviceBackend in pld/cuda/pre_ln_layer.cuh is the model):
//   Stream                   what the work is queued on, passed through to every call;
//   Accum                    the arithmetic type (float; double for a double backend);
//   Params<U>                the twelve tensors (get(ParamId) -> U*; DeviceLayerParams' interface);
//   Handle, Plan<U>          Plan<U>(handle, MatMul) made once per shape, then
//                            run(handle, alpha, X, Y, beta, D, bias, aux, products_workspace, stream);
//   RowStaging               host memory the per-sample row indices are copied from
//                            (reserve(n) -> int*, copied(stream));
//   check_problem(c, B, T)   throws pld::Error for what the backend cannot run;
//   scratch_needs(N, cols)   its ScratchNeeds; fuses_gelu(form, F): whether the FFN products take
//                            the bias_gelu_aux / dgelu epilogues instead of the GELU passes;
//   copy, copy_from_host     byte copies on the stream;
//   one function per pass    with the signatures of pld::cuda's launchers (KernelBackend), but
//                            softmax_backward, which also gets the dropped probabilities (null
//                            without dropout; they may be its output): a backend may read the
//                            mask from them instead of drawing it (the CPU's does);
//   optionally               kKeepsGeluDerivative = true with gelu_forward_keep(pre, act, n, form)
//                            (act = GELU(pre), pre = GELU'(pre)) and gelu_backward_given(dact,
//                            deriv, dpre, n): the CPU's, whose backward then skips erf and exp;
//                            kReadsHeadsInPlace = true: its Plans take MatMuls over two batch
//                            dimensions (MatMul::batch2), and the layer reads the heads inside
//                            the packed rows instead of splitting and merging them (the CPU's).
template <class T, class Backend>
class BasicPreLnLayer {
 public:
  using Params = typename Backend::template Params<T>;
  using Acc = typename Backend::Accum;
  using Grads = typename Backend::template Params<Acc>;
  using Stream = typename Backend::Stream;
  using Handle = typename Backend::Handle;

  // handle_args construct the backend's Handle (the CPU's Gemm takes a pld::cpu::Precision).
  template <class... HandleArgs>
  explicit BasicPreLnLayer(const LayerConfig& config, HandleArgs&&... handle_args)
      : config_((config.validate(), config)), params_(config), grads_(config), handle_(std::forward<HandleArgs>(handle_args)...) {}

  const LayerConfig& config() const { return config_; }
  Params& params() { return params_; }
  const Params& params() const { return params_; }
  // Parameter gradients (Accum); backward accumulates into them (+=). Zero them per optimizer step.
  Grads& grads() { return grads_; }
  const LaunchCounts& launches() const { return counts_; }
  // What runs the products (cuBLASLt's handle; the CPU's Gemm, which reports its kernel).
  const Handle& handle() const { return handle_; }

  // Whether this layer can run (batch, seq): throws pld::Error naming what it cannot do.
  static void can_implement(const LayerConfig& c, int batch, int seq) { Backend::check_problem(c, batch, seq); }

  // Workspace this step needs: zero for a dropped layer (or a per-sample step that keeps no row).
  static WorkspaceSizes workspace_sizes(const LayerConfig& c, int batch, int seq, const LayerStep& step) {
    can_implement(c, batch, seq);
    const int rows = layer_rows(batch, step);
    if (rows == 0) return {};
    const auto L = layout(c, rows, seq, step.rows != nullptr);
    return {L.saved_bytes, L.scratch_bytes};
  }
  WorkspaceSizes workspace_sizes(int batch, int seq, const LayerStep& step) const {
    return workspace_sizes(config_, batch, seq, step);
  }

  // x, y: (B, T, H); y may equal x. valid: (B, T) bytes in the backend's memory, 1 = real token, 0 = padding;
  // null = no padding. A sequence without any real token attends to nothing (its attention output
  // is zero); check masks on the host with check_valid_mask() where they are built.
  void forward(const T* x, T* y, int batch, int seq, const std::uint8_t* valid, const LayerStep& step, const Workspace& ws,
               Stream stream) {
    can_implement(config_, batch, seq);
    const int kb = layer_rows(batch, step);
    pld::detail::WorkspaceLayout L;
    if (kb > 0) {  // checked before any state changes or launches
      L = layout(config_, kb, seq, step.rows != nullptr);
      check_workspace(ws, L);
      DropoutMask a, b, c;
      masks(config_, step, batch, seq, a, b, c);
    }
    batch_ = batch;
    seq_ = seq;
    step_ = step;
    saved_ = kb > 0 ? ws.saved : nullptr;
    const std::size_t all = static_cast<std::size_t>(batch) * seq * config_.hidden;
    rows_.clear();
    if (step.rows)
      for (int b = 0; b < batch; ++b)
        if (step.rows[b]) rows_.push_back(b);
    if (kb == 0) {  // the identity: no kernel, no workspace
      if (y != x) copy(y, x, all, stream);
      return;
    }
    const auto S = static_cast<char*>(ws.saved);
    const auto R = static_cast<char*>(ws.scratch);
    const std::size_t row_elems = static_cast<std::size_t>(seq) * config_.hidden;
    T* xin = reinterpret_cast<T*>(S + L.xin);
    if (!step.rows) {
      copy(xin, x, all, stream);
      core_forward(L, S, R, kb, valid, y, stream);
      return;
    }
    int* index = reinterpret_cast<int*>(S + L.index);
    // From the backend's staging memory (page-locked on a device), not from rows_: a copy from
    // pageable memory can stall the host at every kept layer.
    int* staged = staging_.reserve(rows_.size());
    std::copy(rows_.begin(), rows_.end(), staged);
    Backend::copy_from_host(index, staged, rows_.size() * sizeof(int), stream);
    staging_.copied(stream);
    counts_.copies += 1;
    Backend::gather_rows(x, index, kb, static_cast<std::int64_t>(row_elems), xin, stream, counts_);
    std::uint8_t* valid_g = nullptr;
    if (valid) {
      valid_g = reinterpret_cast<std::uint8_t*>(R + L.valid);
      Backend::gather_valid(valid, index, kb, seq, valid_g, stream, counts_);
    }
    if (y != x) copy(y, x, all, stream);
    T* y_dense = reinterpret_cast<T*>(R + L.rows_in);
    core_forward(L, S, R, kb, valid_g, y_dense, stream);
    Backend::scatter_rows(y_dense, index, kb, static_cast<std::int64_t>(row_elems), y, stream, counts_);
  }

  // dy, dx: (B, T, H) of the last forward; dx is written (may equal dy), parameter gradients
  // accumulate. ws: the forward's `saved` memory and any scratch of the same size.
  void backward(const T* dy, T* dx, const Workspace& ws, Stream stream) {
    if (batch_ == 0) pld::detail::throw_error("PreLnLayer::backward() without a forward()");
    const std::size_t all = static_cast<std::size_t>(batch_) * seq_ * config_.hidden;
    // From the forward's own copy of the kept rows: the caller's plan need not outlive the forward.
    const int kb = !step_.kept ? 0 : step_.rows ? static_cast<int>(rows_.size()) : batch_;
    if (kb == 0) {
      if (dx != dy) copy(dx, dy, all, stream);
      return;
    }
    const auto L = layout(config_, kb, seq_, step_.rows != nullptr);
    check_workspace(ws, L);
    if (ws.saved != saved_)
      pld::detail::throw_error("PreLnLayer::backward(): the saved workspace is not the one the forward used");
    const auto S = static_cast<char*>(ws.saved);
    const auto R = static_cast<char*>(ws.scratch);
    if (!step_.rows) {
      core_backward(L, S, R, kb, dy, dx, stream);
      return;
    }
    const std::size_t row_elems = static_cast<std::size_t>(seq_) * config_.hidden;
    const int* index = reinterpret_cast<const int*>(S + L.index);
    T* dy_dense = reinterpret_cast<T*>(R + L.rows_in);
    T* dx_dense = reinterpret_cast<T*>(R + L.rows_out);
    Backend::gather_rows(dy, index, kb, static_cast<std::int64_t>(row_elems), dy_dense, stream, counts_);
    if (dx != dy) copy(dx, dy, all, stream);
    core_backward(L, S, R, kb, dy_dense, dx_dense, stream);
    Backend::scatter_rows(dx_dense, index, kb, static_cast<std::int64_t>(row_elems), dx, stream, counts_);
  }

  // FLOPs of one forward (GEMMs only); the backward is twice this.
  static double forward_flops(const LayerConfig& c, int batch, int seq) { return layer_forward_flops(c, batch, seq); }

  // Whether the FFN products apply the GELU (the backend's epilogues: cuBLASLt's for the tanh form
  // and F a multiple of 8) or the backend's GELU passes do.
  bool uses_gelu_epilogue() const { return Backend::fuses_gelu(config_.gelu, config_.ffn_size()); }

 private:
  static pld::detail::WorkspaceLayout layout(const LayerConfig& c, int rows, int seq, bool per_sample) {
    return pld::detail::WorkspaceLayout::make(c, rows, seq, sizeof(T), sizeof(Acc), per_sample, Backend::scratch_needs, !kHeadsInPlace);
  }

  static void check_workspace(const Workspace& ws, const pld::detail::WorkspaceLayout& L) {
    if (!ws.saved || ws.saved_bytes < L.saved_bytes || !ws.scratch || ws.scratch_bytes < L.scratch_bytes)
      pld::detail::throw_error("PreLnLayer: workspace too small (saved ", ws.saved_bytes, " of ", L.saved_bytes,
                               " bytes, scratch ", ws.scratch_bytes, " of ", L.scratch_bytes, "); ask workspace_sizes()");
    // Every buffer inside starts at a multiple of 256 bytes from these, which the GEMM plans assume.
    if (reinterpret_cast<std::uintptr_t>(ws.saved) % kWorkspaceAlign != 0 || reinterpret_cast<std::uintptr_t>(ws.scratch) % kWorkspaceAlign != 0)
      pld::detail::throw_error("PreLnLayer: workspace pointers must be 256-byte aligned (cudaMalloc's alignment)");
  }

  void copy(T* dst, const T* src, std::size_t n, Stream stream) {
    Backend::copy(dst, src, n * sizeof(T), stream);
    counts_.copies += 1;
  }

  // The GEMMs of one (rows, seq) shape, planned once and kept: per-sample steps change the row
  // count, so several shapes can live side by side.
  using Plan = typename Backend::template Plan<T>;
  struct Plans {
    Plan qkv, out, ffn1, ffn2;           // forward projections
    Plan scores, pv, ptv;                // attention: A B^T (fp32 out), P V, P^T V; heads in place: scores, ctx, dV
    Plan w_qkv, w_out, w_ffn1, w_ffn2;   // weight gradients (fp32, accumulate)
    Plan d_qkv, d_out, d_ffn1, d_ffn2;   // input gradients
    // Heads in place: the backward's other three, whose operands sit in other rows than the
    // forward's (dC in (N, H) rows, dQ and dK written into (N, 3H) rows).
    std::unique_ptr<Plan> dp, dq, dk;
  };
  static constexpr bool kHeadsInPlace = detail::reads_heads_in_place<Backend>::value;

  Plans& plans(int kb) {
    const std::pair<int, int> key{kb, seq_};
    auto it = plans_.find(key);
    if (it != plans_.end()) return *it->second;
    const int N = kb * seq_, H = config_.hidden, F = config_.ffn_size(), heads = config_.heads, d = config_.head_dim();
    const bool gelu_epi = uses_gelu_epilogue();
    // K, V (and dK, dV) start N*H elements into the head-major buffers.
    const int head_align = static_cast<int>(pow2_alignment(static_cast<std::int64_t>(N) * H * sizeof(T)));
    // Heads in place: q, k, v of a head are `d` columns of the packed (N, 3H) rows, the
    // context's and its gradient's of (N, H) rows; scores and probabilities stay (kb, heads, T, T).
    const HeadsOperand qkv_rows = packed_heads_operand(seq_, d, 3 * H), ctx_rows = packed_heads_operand(seq_, d, H),
                       square = square_heads_operand(heads, seq_);
    auto in_place = [&](int m, int n, int k, bool tx, bool ty, HeadsOperand x, HeadsOperand y, HeadsOperand o, bool accum) {
      return with_alignment(heads_in_place_product(kb, heads, m, n, k, tx, ty, x, y, o, accum), static_cast<int>(pow2_alignment(d * sizeof(T))));
    };
    const int S = seq_;
    auto made = std::unique_ptr<Plans>(new Plans{
        Plan(handle_, with_epilogue(linear_product(N, H, 3 * H), Epilogue::bias)),
        Plan(handle_, with_epilogue(linear_product(N, H, H), Epilogue::bias)),
        Plan(handle_, with_epilogue(linear_product(N, H, F), gelu_epi ? Epilogue::bias_gelu_aux : Epilogue::bias, gelu_epi ? F : 0)),
        Plan(handle_, with_epilogue(linear_product(N, F, H), Epilogue::bias)),
        Plan(handle_, kHeadsInPlace ? in_place(S, S, d, false, true, qkv_rows, qkv_rows, square, true)  // scores = Q K^T
                                    : with_alignment(heads_abt_product(kb * heads, seq_, d, true), head_align)),
        Plan(handle_, kHeadsInPlace ? in_place(S, d, S, false, false, square, qkv_rows, ctx_rows, false)  // ctx = Pd V
                                    : with_alignment(heads_pv_product(kb * heads, seq_, d), head_align)),
        Plan(handle_, kHeadsInPlace ? in_place(S, d, S, true, false, square, ctx_rows, qkv_rows, false)  // dV = Pd^T dC
                                    : with_alignment(heads_ptv_product(kb * heads, seq_, d), head_align)),
        Plan(handle_, linear_wgrad_product(N, H, 3 * H)),
        Plan(handle_, linear_wgrad_product(N, H, H)),
        Plan(handle_, linear_wgrad_product(N, H, F)),
        Plan(handle_, linear_wgrad_product(N, F, H)),
        Plan(handle_, linear_dgrad_product(N, H, 3 * H)),
        Plan(handle_, linear_dgrad_product(N, H, H)),
        Plan(handle_, linear_dgrad_product(N, H, F)),
        Plan(handle_, with_epilogue(linear_dgrad_product(N, F, H), gelu_epi ? Epilogue::dgelu : Epilogue::none, gelu_epi ? F : 0)),
        nullptr, nullptr, nullptr});
    if constexpr (kHeadsInPlace) {
      made->dp = std::make_unique<Plan>(handle_, in_place(S, S, d, false, true, ctx_rows, qkv_rows, square, true));  // d(Pd) = dC V^T
      made->dq = std::make_unique<Plan>(handle_, in_place(S, d, S, false, false, square, qkv_rows, qkv_rows, false));  // dQ = dS K
      made->dk = std::make_unique<Plan>(handle_, in_place(S, d, S, true, false, square, qkv_rows, qkv_rows, false));  // dK = dS^T Q
    }
    return *plans_.emplace(key, std::move(made)).first->second;
  }

  // D = alpha op(X) op(Y) + beta D on the plan's shapes (pld::MatMul).
  void gemm(Plan& plan, Acc alpha, const void* x, const void* y, Acc beta, void* d, const void* bias,
            const void* aux, void* products_ws, Stream stream) {
    plan.run(handle_, alpha, x, y, beta, d, bias, aux, products_ws, stream);
    counts_.gemms += 1;
  }

  template <class U>
  static U* at(char* base, std::size_t off) { return reinterpret_cast<U*>(base + off); }

  // Sizes, shapes and dropout masks of one step over kb dense rows.
  struct Dims {
    int seq, H, F, heads, d, N;
    std::int64_t NH, TT;  // N*H, kb*heads*T*T
    Acc g;                // the gate scale
    HeadShape qkv_shape, one_shape;
    DropoutMask attn, ao, fo;  // attention probabilities, attention output, FFN output
  };
  Dims dims(int kb) const {
    Dims D;
    D.seq = seq_;
    D.H = config_.hidden;
    D.F = config_.ffn_size();
    D.heads = config_.heads;
    D.d = config_.head_dim();
    D.N = kb * seq_;
    D.NH = static_cast<std::int64_t>(D.N) * D.H;
    D.TT = static_cast<std::int64_t>(kb) * D.heads * seq_ * seq_;
    D.g = static_cast<Acc>(step_.scale);
    D.qkv_shape = HeadShape{kb, seq_, D.heads, D.d, 3};
    D.one_shape = HeadShape{kb, seq_, D.heads, D.d, 1};
    masks(config_, step_, batch_, seq_, D.attn, D.ao, D.fo);
    return D;
  }

  // The step's three dropout masks, keyed by global rows (LayerStep::first_row: each row's elements
  // of a site follow its predecessors'); a pld::Error where the rows run past a mask's stream.
  static void masks(const LayerConfig& c, const LayerStep& step, int batch, int seq, DropoutMask& attn, DropoutMask& ao, DropoutMask& fo) {
    const auto t = static_cast<std::uint64_t>(seq);
    const std::uint64_t per_row = t * static_cast<std::uint64_t>(c.hidden), per_row_attn = static_cast<std::uint64_t>(c.heads) * t * t;
    attn = make_dropout_mask(step, DropoutSite::attention_probs, c.attention_dropout, per_row_attn, batch);
    ao = make_dropout_mask(step, DropoutSite::attention_out, c.hidden_dropout, per_row, batch);
    fo = make_dropout_mask(step, DropoutSite::ffn_out, c.hidden_dropout, per_row, batch);
  }

  // Every buffer of one step (pld/layer/workspace.hpp), by name. What three of them hold depends
  // on where the LayerNorms are:    Pre-LN        Post-LN
  //                            ln1  LN1(x)        x + g t1 (LN1's input)
  //                            h    x + g t1      LN1's output
  //                            ln2  LN2(h)        h + g t2 (LN2's input)
  struct Bufs {
    T *xin, *ln1, *qkvh, *probs, *ctx, *h, *ln2, *pre, *act;
    Acc *mean1, *rstd1, *mean2, *rstd2;
    T *qkv, *dropped, *ctxh, *branch, *wide, *dln, *dh, *dqkvh;  // scratch
    Acc *scores, *colsum;
    void* pws;
  };
  static Bufs bufs(const pld::detail::WorkspaceLayout& L, char* S, char* R) {
    return Bufs{at<T>(S, L.xin),     at<T>(S, L.ln1),    at<T>(S, L.qkvh),    at<T>(S, L.probs),    at<T>(S, L.ctx),
                at<T>(S, L.h),       at<T>(S, L.ln2),    at<T>(S, L.pre),     at<T>(S, L.act),      at<Acc>(S, L.mean1),
                at<Acc>(S, L.rstd1), at<Acc>(S, L.mean2), at<Acc>(S, L.rstd2), at<T>(R, L.qkv),      at<T>(R, L.dropped),
                at<T>(R, L.ctxh),    at<T>(R, L.branch), at<T>(R, L.wide),    at<T>(R, L.dln),      at<T>(R, L.dh),
                at<T>(R, L.dqkvh),   at<Acc>(R, L.scores), at<Acc>(R, L.colsum), R + L.products};
  }

  // The kept rows' computation on dense (kb, T, H) buffers: x is the saved xin, y is written.
  //   Pre-LN:  h = x + g t1(LN1 x),  y = h + g t2(LN2 h)
  //   Post-LN: h = LN1(x + g t1(x)), y = LN2(h + g t2(h))
  // with t1 = Dropout(Wo MHA(.) + bo), t2 = Dropout(W2 GELU(W1 . + b1) + b2).
  void core_forward(const pld::detail::WorkspaceLayout& L, char* S, char* R, int kb, const std::uint8_t* valid, T* y,
                    Stream stream) {
    const Dims D = dims(kb);
    Plans& P = plans(kb);
    const Bufs B = bufs(L, S, R);
    const Params& p = params_;
    const int N = D.N, H = D.H;
    const double eps = config_.ln_eps;
    if (config_.norm == NormPosition::post) {
      attention_forward(D, P, B, B.xin, valid, kb, stream);
      Backend::residual_layer_norm(B.xin, B.branch, B.ln1, p.get(ParamId::norm1_weight), p.get(ParamId::norm1_bias), B.h, B.mean1,
                                   B.rstd1, N, H, D.g, D.ao, eps, stream, counts_);
      ffn_forward(D, P, B, B.h, stream);
      Backend::residual_layer_norm(B.h, B.branch, B.ln2, p.get(ParamId::norm2_weight), p.get(ParamId::norm2_bias), y, B.mean2, B.rstd2, N,
                                   H, D.g, D.fo, eps, stream, counts_);
      return;
    }
    Backend::layer_norm_forward(B.xin, p.get(ParamId::norm1_weight), p.get(ParamId::norm1_bias), B.ln1, B.mean1, B.rstd1, N, H, eps,
                                stream, counts_);
    attention_forward(D, P, B, B.ln1, valid, kb, stream);
    Backend::residual_layer_norm(B.xin, B.branch, B.h, p.get(ParamId::norm2_weight), p.get(ParamId::norm2_bias), B.ln2, B.mean2, B.rstd2,
                                 N, H, D.g, D.ao, eps, stream, counts_);
    ffn_forward(D, P, B, B.ln2, stream);
    Backend::residual_dropout(B.h, B.branch, y, D.NH, D.g, D.fo, stream, counts_);
  }

  // branch = Wo MHA(in) + bo (before its dropout); saves qkvh, probs, ctx.
  // Heads in place: qkvh holds the packed (N, 3H) rows (q|k|v of a token side by side) and the
  // context is written straight into ctx's (N, H) rows.
  void attention_forward(const Dims& D, Plans& P, const Bufs& B, const T* in, const std::uint8_t* valid, int kb, Stream stream) {
    const Params& p = params_;
    const std::int64_t part = kHeadsInPlace ? D.H : D.NH;  // q, k, v: columns of the packed rows, or head-major blocks
    const T *Q = B.qkvh, *K = B.qkvh + part, *V = B.qkvh + 2 * part;
    gemm(P.qkv, 1.0f, in, p.get(ParamId::in_proj_weight), 0.0f, kHeadsInPlace ? B.qkvh : B.qkv, p.get(ParamId::in_proj_bias), nullptr,
         B.pws, stream);
    if constexpr (!kHeadsInPlace) Backend::split_heads(B.qkv, B.qkvh, D.qkv_shape, stream, counts_);
    gemm(P.scores, Acc(1) / std::sqrt(static_cast<Acc>(D.d)), Q, K, 0.0f, B.scores, nullptr, nullptr, B.pws, stream);
    Backend::softmax_forward(B.scores, valid, B.probs, D.attn.active() ? B.dropped : nullptr, kb, D.heads, D.seq, D.attn, stream, counts_);
    gemm(P.pv, 1.0f, D.attn.active() ? B.dropped : B.probs, V, 0.0f, kHeadsInPlace ? B.ctx : B.ctxh, nullptr, nullptr, B.pws, stream);
    if constexpr (!kHeadsInPlace) Backend::merge_heads(B.ctxh, B.ctx, D.one_shape, stream, counts_);
    gemm(P.out, 1.0f, B.ctx, p.get(ParamId::out_proj_weight), 0.0f, B.branch, p.get(ParamId::out_proj_bias), nullptr, B.pws, stream);
  }

  // branch = W2 GELU(W1 in + b1) + b2 (before its dropout); saves pre (or, kKeepsGeluDerivative,
  // GELU'(pre) in its place), act.
  void ffn_forward(const Dims& D, Plans& P, const Bufs& B, const T* in, Stream stream) {
    const Params& p = params_;
    if (uses_gelu_epilogue()) {
      gemm(P.ffn1, 1.0f, in, p.get(ParamId::linear1_weight), 0.0f, B.act, p.get(ParamId::linear1_bias), B.pre, B.pws, stream);
    } else {
      gemm(P.ffn1, 1.0f, in, p.get(ParamId::linear1_weight), 0.0f, B.pre, p.get(ParamId::linear1_bias), nullptr, B.pws, stream);
      if constexpr (detail::keeps_gelu_derivative<Backend>::value)
        Backend::gelu_forward_keep(B.pre, B.act, static_cast<std::int64_t>(D.N) * D.F, config_.gelu, stream, counts_);  // pre := GELU'(pre)
      else
        Backend::gelu_forward(B.pre, B.act, static_cast<std::int64_t>(D.N) * D.F, config_.gelu, stream, counts_);
    }
    gemm(P.ffn2, 1.0f, B.act, p.get(ParamId::linear2_weight), 0.0f, B.branch, p.get(ParamId::linear2_bias), nullptr, B.pws, stream);
  }

  // dy (kb, T, H) in, dx written; gradients accumulate. dx may equal dy: dy is last read before
  // anything writes dx.
  void core_backward(const pld::detail::WorkspaceLayout& L, char* S, char* R, int kb, const T* dy, T* dx, Stream stream) {
    const Dims D = dims(kb);
    Plans& P = plans(kb);
    const Bufs B = bufs(L, S, R);
    const Params& p = params_;
    Grads& gr = grads_;
    const int N = D.N, H = D.H;
    if (config_.norm == NormPosition::post) {
      const DropoutMask none;  // a plain sum: out = x + 1 * t
      // ds2 = LN2'(dy) into dh; the FFN branch sees g Dropout(ds2); dL/dh = ds2 + its d(in).
      Backend::layer_norm_backward(dy, B.ln2, B.mean2, B.rstd2, p.get(ParamId::norm2_weight), nullptr, B.dh, gr.get(ParamId::norm2_weight),
                                   gr.get(ParamId::norm2_bias), N, H, B.colsum, stream, counts_);
      Backend::residual_dropout(nullptr, B.dh, B.branch, D.NH, D.g, D.fo, stream, counts_);
      ffn_backward(D, P, B, B.h, stream);
      Backend::residual_dropout(B.dh, B.dln, B.dln, D.NH, Acc(1), none, stream, counts_);
      // ds1 = LN1'(dL/dh) into dh; the attention branch sees g Dropout(ds1); dx = ds1 + its d(in).
      Backend::layer_norm_backward(B.dln, B.ln1, B.mean1, B.rstd1, p.get(ParamId::norm1_weight), nullptr, B.dh,
                                   gr.get(ParamId::norm1_weight), gr.get(ParamId::norm1_bias), N, H, B.colsum, stream, counts_);
      Backend::residual_dropout(nullptr, B.dh, B.branch, D.NH, D.g, D.ao, stream, counts_);
      attention_backward(D, P, B, B.xin, kb, stream);
      Backend::residual_dropout(B.dh, B.dln, dx, D.NH, Acc(1), none, stream, counts_);
      return;
    }
    // FFN branch: y = h + g Dropout(W2 act + b2), act = gelu(W1 ln2 + b1); dL/dh = dy + LN2'(its d(in)).
    Backend::residual_dropout(nullptr, dy, B.branch, D.NH, D.g, D.fo, stream, counts_);
    ffn_backward(D, P, B, B.ln2, stream);
    Backend::layer_norm_backward(B.dln, B.h, B.mean2, B.rstd2, p.get(ParamId::norm2_weight), dy, B.dh, gr.get(ParamId::norm2_weight),
                                 gr.get(ParamId::norm2_bias), N, H, B.colsum, stream, counts_);
    // Attention branch: h = x + g Dropout(Wo ctx + bo); dx = dL/dh + LN1'(its d(in)).
    Backend::residual_dropout(nullptr, B.dh, B.branch, D.NH, D.g, D.ao, stream, counts_);
    attention_backward(D, P, B, B.ln1, kb, stream);
    Backend::layer_norm_backward(B.dln, B.xin, B.mean1, B.rstd1, p.get(ParamId::norm1_weight), B.dh, dx, gr.get(ParamId::norm1_weight),
                                 gr.get(ParamId::norm1_bias), N, H, B.colsum, stream, counts_);
  }

  // From B.branch = the gradient of the FFN branch's output (after its dropout's backward):
  // the FFN's gradients, and the gradient of its input `in` into B.dln.
  void ffn_backward(const Dims& D, Plans& P, const Bufs& B, const T* in, Stream stream) {
    const Params& p = params_;
    Grads& gr = grads_;
    const T* dbranch = B.branch;
    Backend::column_sums(dbranch, D.N, D.H, gr.get(ParamId::linear2_bias), B.colsum, stream, counts_);
    gemm(P.w_ffn2, 1.0f, dbranch, B.act, 1.0f, gr.get(ParamId::linear2_weight), nullptr, nullptr, B.pws, stream);
    if (uses_gelu_epilogue()) {
      gemm(P.d_ffn2, 1.0f, dbranch, p.get(ParamId::linear2_weight), 0.0f, B.wide, nullptr, B.pre, B.pws, stream);
    } else {
      gemm(P.d_ffn2, 1.0f, dbranch, p.get(ParamId::linear2_weight), 0.0f, B.wide, nullptr, nullptr, B.pws, stream);
      if constexpr (detail::keeps_gelu_derivative<Backend>::value)
        Backend::gelu_backward_given(B.wide, B.pre, B.wide, static_cast<std::int64_t>(D.N) * D.F, stream, counts_);
      else
        Backend::gelu_backward(B.wide, B.pre, B.wide, static_cast<std::int64_t>(D.N) * D.F, config_.gelu, stream, counts_);
    }
    Backend::column_sums(B.wide, D.N, D.F, gr.get(ParamId::linear1_bias), B.colsum, stream, counts_);
    gemm(P.w_ffn1, 1.0f, B.wide, in, 1.0f, gr.get(ParamId::linear1_weight), nullptr, nullptr, B.pws, stream);
    gemm(P.d_ffn1, 1.0f, B.wide, p.get(ParamId::linear1_weight), 0.0f, B.dln, nullptr, nullptr, B.pws, stream);
  }

  // From B.branch = the gradient of the attention branch's output (after its dropout's
  // backward): the attention's gradients, and the gradient of its input `in` into B.dln.
  void attention_backward(const Dims& D, Plans& P, const Bufs& B, const T* in, int kb, Stream stream) {
    const Params& p = params_;
    Grads& gr = grads_;
    const std::int64_t part = kHeadsInPlace ? D.H : D.NH;  // as in attention_forward
    const T *Q = B.qkvh, *K = B.qkvh + part, *V = B.qkvh + 2 * part;
    const T* dbranch = B.branch;
    T* dqkv = B.qkv;   // the forward's packed q|k|v is not needed again
    // Heads in place: dC is read in B.dln's (N, H) rows, dQ, dK and dV written into dqkv's.
    T* dctxh = kHeadsInPlace ? B.dln : B.ctxh;
    T* dheads = kHeadsInPlace ? dqkv : B.dqkvh;
    Backend::column_sums(dbranch, D.N, D.H, gr.get(ParamId::out_proj_bias), B.colsum, stream, counts_);
    gemm(P.w_out, 1.0f, dbranch, B.ctx, 1.0f, gr.get(ParamId::out_proj_weight), nullptr, nullptr, B.pws, stream);
    gemm(P.d_out, 1.0f, dbranch, p.get(ParamId::out_proj_weight), 0.0f, B.dln, nullptr, nullptr, B.pws, stream);  // dctx
    if constexpr (!kHeadsInPlace) Backend::split_heads(B.dln, dctxh, D.one_shape, stream, counts_);
    const T* pd = B.probs;
    if (D.attn.active()) {
      Backend::dropout_probs(B.probs, B.dropped, D.TT, D.attn, stream, counts_);
      pd = B.dropped;
    }
    gemm(P.ptv, 1.0f, pd, dctxh, 0.0f, dheads + 2 * part, nullptr, nullptr, B.pws, stream);               // dV = Pd^T dC
    gemm(kHeadsInPlace ? *P.dp : P.scores, 1.0f, dctxh, V, 0.0f, B.scores, nullptr, nullptr, B.pws, stream);  // d(Pd) = dC V^T
    // dS over Pd: softmax_backward is Pd's last reader (a backend that reads the mask from it
    // reads each row before it writes that row).
    T* ds = B.dropped;
    Backend::softmax_backward(B.scores, B.probs, D.attn.active() ? B.dropped : nullptr, ds, kb, D.heads, D.seq,
                              Acc(1) / std::sqrt(static_cast<Acc>(D.d)), D.attn, stream, counts_);
    gemm(kHeadsInPlace ? *P.dq : P.pv, 1.0f, ds, K, 0.0f, dheads, nullptr, nullptr, B.pws, stream);          // dQ = dS K
    gemm(kHeadsInPlace ? *P.dk : P.ptv, 1.0f, ds, Q, 0.0f, dheads + part, nullptr, nullptr, B.pws, stream);  // dK = dS^T Q
    if constexpr (!kHeadsInPlace) Backend::merge_heads(B.dqkvh, dqkv, D.qkv_shape, stream, counts_);
    Backend::column_sums(dqkv, D.N, 3 * D.H, gr.get(ParamId::in_proj_bias), B.colsum, stream, counts_);
    gemm(P.w_qkv, 1.0f, dqkv, in, 1.0f, gr.get(ParamId::in_proj_weight), nullptr, nullptr, B.pws, stream);
    gemm(P.d_qkv, 1.0f, dqkv, p.get(ParamId::in_proj_weight), 0.0f, B.dln, nullptr, nullptr, B.pws, stream);
  }

  LayerConfig config_;
  Params params_;
  Grads grads_;
  Handle handle_;
  std::map<std::pair<int, int>, std::unique_ptr<Plans>> plans_;
  LaunchCounts counts_;
  int batch_ = 0, seq_ = 0;
  LayerStep step_;
  std::vector<int> rows_;
  typename Backend::RowStaging staging_;
  void* saved_ = nullptr;
};

}  // namespace pld
