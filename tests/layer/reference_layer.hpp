// The CPU layer as it was written before the layer logic was shared (pld::cpu::PreLnLayer up to
// session 10): its own buffers, the heads read in place inside the packed rows, bf16 operands
// converted once per step. It stays here, in the tests, as the independent implementation the
// shared logic (pld::BasicPreLnLayer on every backend, pld::cpu::PreLnLayer included) is checked
// against; finite differences and the PyTorch goldens checked it for ten sessions, and
// tests/test_cpu_reference.cpp still checks it against the goldens.
//
// The layer: Pre-LN (the default)
//   h = x + g * Dropout(Wo MHA(LN1(x), mask) + bo)
//   y = h + g * Dropout(W2 GELU(W1 LN2(h) + b1) + b2)
// or Post-LN (LayerConfig::norm = post, BERT's original layer):
//   h = LN1(x + g * Dropout(Wo MHA(x, mask) + bo))
//   y = LN2(h + g * Dropout(W2 GELU(W1 h + b1) + b2))
// g is the layer's gate scale from the LayerPlan (1/p_l when kept). A dropped layer is the
// identity: no work, no saved activations, gradients pass straight through. In per-sample mode
// only the kept rows are computed (gather, compute, scatter). Scalar is float or double.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/cpu/attention.hpp"
#include "pld/cpu/dropout.hpp"
#include "pld/cpu/gelu.hpp"
#include "pld/cpu/gemm.hpp"
#include "pld/cpu/layer_norm.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/cpu/linear.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld::test {

using namespace pld::cpu;  // the reference is written with pld::cpu's kernels
using pld::LayerStep;
using pld::NormPosition;

template <class Scalar>
class ReferenceLayer {
 public:
  // Gradients start at zero (LayerParams' constructor sets LayerNorm weights to 1, right for
  // parameters, wrong for their gradients).
  explicit ReferenceLayer(const LayerConfig& config, Precision precision = Precision::fp32)
      : config_((config.validate(), config)), params_(config), grads_(config), gemm_(precision) {
    grads_.zero();
  }

  // The products' engine: its precision and the implementation that ran last.
  const Gemm& gemm() const { return gemm_; }

  const LayerConfig& config() const { return config_; }
  LayerParams<Scalar>& params() { return params_; }
  const LayerParams<Scalar>& params() const { return params_; }
  // Parameter gradients; backward accumulates into them (+=). Zero them per optimizer step.
  LayerParams<Scalar>& grads() { return grads_; }

  // x, y: (B, T, H). valid: (B, T), 1 = real token, 0 = padding; null = no padding. y may equal x.
  void forward(const Scalar* x, Scalar* y, int batch, int seq, const std::uint8_t* valid, const LayerStep& step) {
    check_shape(batch, seq, valid);
    const std::size_t row = static_cast<std::size_t>(seq) * static_cast<std::size_t>(config_.hidden);
    batch_ = batch;
    seq_ = seq;
    step_ = step;
    rows_.clear();
    if (!step.kept) {  // the identity: nothing computed, nothing saved
      release();
      if (y != x) std::memmove(y, x, sizeof(Scalar) * row * static_cast<std::size_t>(batch));
      return;
    }
    if (!step.rows) {
      core_forward(x, y, batch, valid);
      return;
    }
    for (int b = 0; b < batch; ++b)
      if (step.rows[b]) rows_.push_back(b);
    if (y != x) std::memmove(y, x, sizeof(Scalar) * row * static_cast<std::size_t>(batch));
    if (rows_.empty()) {
      release();
      return;
    }
    const auto kb = rows_.size();
    gather_x_.resize(kb * row);
    gather_valid_.resize(valid ? kb * static_cast<std::size_t>(seq) : 0);
    for (std::size_t k = 0; k < kb; ++k) {
      std::memcpy(gather_x_.data() + k * row, x + static_cast<std::size_t>(rows_[k]) * row, sizeof(Scalar) * row);
      if (valid)
        std::memcpy(gather_valid_.data() + k * static_cast<std::size_t>(seq),
                    valid + static_cast<std::size_t>(rows_[k]) * static_cast<std::size_t>(seq),
                    static_cast<std::size_t>(seq));
    }
    gather_y_.resize(kb * row);
    core_forward(gather_x_.data(), gather_y_.data(), static_cast<int>(kb), valid ? gather_valid_.data() : nullptr);
    for (std::size_t k = 0; k < kb; ++k)
      std::memcpy(y + static_cast<std::size_t>(rows_[k]) * row, gather_y_.data() + k * row, sizeof(Scalar) * row);
  }

  // dy, dx: (B, T, H) of the last forward. dx is written (may equal dy); parameter gradients
  // accumulate.
  void backward(const Scalar* dy, Scalar* dx) {
    if (batch_ == 0) pld::detail::throw_error("PreLnLayer::backward() without a forward()");
    const std::size_t row = static_cast<std::size_t>(seq_) * static_cast<std::size_t>(config_.hidden);
    const std::size_t all = row * static_cast<std::size_t>(batch_);
    if (!step_.kept) {
      if (dx != dy) std::memmove(dx, dy, sizeof(Scalar) * all);
      return;
    }
    if (!step_.rows) {
      core_backward(dy, dx, batch_);
      return;
    }
    const auto kb = rows_.size();
    gather_y_.resize(kb * row);  // reused for the gathered dy
    for (std::size_t k = 0; k < kb; ++k)
      std::memcpy(gather_y_.data() + k * row, dy + static_cast<std::size_t>(rows_[k]) * row, sizeof(Scalar) * row);
    if (dx != dy) std::memmove(dx, dy, sizeof(Scalar) * all);
    if (kb == 0) return;
    gather_x_.resize(kb * row);  // reused for the gathered dx
    core_backward(gather_y_.data(), gather_x_.data(), static_cast<int>(kb));
    for (std::size_t k = 0; k < kb; ++k)
      std::memcpy(dx + static_cast<std::size_t>(rows_[k]) * row, gather_x_.data() + k * row, sizeof(Scalar) * row);
  }

  // Bytes of activations the last forward saved, their bf16 copies included (0 after a dropped
  // layer).
  std::size_t saved_bytes() const {
    std::size_t n = 0;
    for (const auto* v : activations()) n += v->capacity();
    return n * sizeof(Scalar) + valid_.capacity() + gemm_.converted_bytes();
  }

  // FLOPs of one forward on (batch, seq) rows (GEMMs only: 2 per multiply-add); backward is 2x.
  static double forward_flops(const LayerConfig& c, int batch, int seq) { return layer_forward_flops(c, batch, seq); }

 private:
  void check_shape(int batch, int seq, const std::uint8_t* valid) const {
    if (batch <= 0) pld::detail::throw_error("PreLnLayer: batch must be > 0, got ", batch);
    if (seq <= 0) pld::detail::throw_error("PreLnLayer: sequence length T must be > 0, got ", seq);
    check_valid_mask(valid, batch, seq);
  }

  // The buffers the forward saves for the backward: what saved_bytes() counts.
  std::array<std::vector<Scalar>*, 13> activations() {
    return {&x_, &ln1_, &mean1_, &rstd1_, &qkv_, &probs_, &ctx_, &h_, &ln2_, &mean2_, &rstd2_, &pre_, &act_};
  }
  std::array<const std::vector<Scalar>*, 13> activations() const {
    return {&x_, &ln1_, &mean1_, &rstd1_, &qkv_, &probs_, &ctx_, &h_, &ln2_, &mean2_, &rstd2_, &pre_, &act_};
  }

  // Frees the saved activations and the scratch: a dropped layer holds no memory.
  void release() {
    auto free = [](std::vector<Scalar>& v) {
      v.clear();
      v.shrink_to_fit();
    };
    for (auto* v : activations()) free(*v);
    for (auto* v : {&tmp_, &dbranch_, &dh_, &dwide_, &dqkv_, &dln_, &attn_a_, &attn_b_}) free(*v);
    gemm_.free_converted();
    kept_activations_ = {};
    valid_.clear();
    valid_.shrink_to_fit();
  }

  DropoutKey key(DropoutSite site) const { return DropoutKey{step_.seed, step_.step, step_.layer, site}; }
  float attn_rate() const { return step_.training ? config_.attention_dropout : 0.0f; }
  float hidden_rate() const { return step_.training ? config_.hidden_dropout : 0.0f; }

  void core_forward(const Scalar* x, Scalar* y, int batch, const std::uint8_t* valid) {
    prepare_forward(x, batch, valid);
    if (config_.norm == NormPosition::post) post_forward(y, batch, valid);
    else pre_forward(y, batch, valid);
  }
  void core_backward(const Scalar* dy, Scalar* dx, int batch) {
    prepare_backward(batch);
    if (config_.norm == NormPosition::post) post_backward(dy, dx, batch);
    else pre_backward(dy, dx, batch);
  }

  // out = a + s b (a null: out = s b); out may be a or b. The residual adds and gate scales,
  // split over the threads.
  static void add_scaled(Scalar* out, const Scalar* a, Scalar s, const Scalar* b, std::size_t n) {
    const auto N = static_cast<std::ptrdiff_t>(n);
    if (a) {
#pragma omp parallel for simd schedule(static) if (N > 65536)
      for (std::ptrdiff_t i = 0; i < N; ++i) out[i] = a[i] + s * b[i];
    } else {
#pragma omp parallel for simd schedule(static) if (N > 65536)
      for (std::ptrdiff_t i = 0; i < N; ++i) out[i] = s * b[i];
    }
  }
  // acc += a, then scaled = s acc, in one pass.
  static void add_then_scale(Scalar* acc, const Scalar* a, Scalar s, Scalar* scaled, std::size_t n) {
    const auto N = static_cast<std::ptrdiff_t>(n);
#pragma omp parallel for simd schedule(static) if (N > 65536)
    for (std::ptrdiff_t i = 0; i < N; ++i) {
      acc[i] += a[i];
      scaled[i] = s * acc[i];
    }
  }

  // The sizes of one step over (batch, T) rows: N tokens, the attention's shape, the gate scale.
  struct Dims {
    int T, H, F, N;
    std::size_t NH, NF;
    Scalar g;
    AttentionShape shape;
  };
  Dims dims(int batch) const {
    const int T = seq_, H = config_.hidden, F = config_.ffn_size();
    return Dims{T, H, F, batch * T, static_cast<std::size_t>(batch) * T * H, static_cast<std::size_t>(batch) * T * F,
                static_cast<Scalar>(step_.scale), AttentionShape{batch, T, H, config_.heads}};
  }

  // Saves the input and sizes every buffer. What the buffers hold, Pre-LN / Post-LN:
  // ln1_ LN1(x) / x + g t1 (LN1's input); h_ x + g t1 / LN1's output; ln2_ LN2(h) / h + g t2.
  void prepare_forward(const Scalar* x, int batch, const std::uint8_t* valid) {
    const Dims D = dims(batch);
    // With bf16 products each weight is converted once per forward and reused by the backward
    // (the weights do not change in between; the next forward converts them again).
    if constexpr (std::is_same_v<Scalar, float>) gemm_.release_all_converted();
    x_.assign(x, x + D.NH);  // (N, H) the input
    if (valid) valid_.assign(valid, valid + static_cast<std::size_t>(D.N)); else valid_.clear();
    ln1_.resize(D.NH);       // (N, H)
    mean1_.resize(static_cast<std::size_t>(D.N));
    rstd1_.resize(static_cast<std::size_t>(D.N));
    qkv_.resize(3 * D.NH);   // (N, 3H)
    probs_.resize(D.shape.probs_size());  // (B, heads, T, T)
    ctx_.resize(D.NH);       // (N, H)
    h_.resize(D.NH);         // (N, H)
    ln2_.resize(D.NH);       // (N, H)
    mean2_.resize(static_cast<std::size_t>(D.N));
    rstd2_.resize(static_cast<std::size_t>(D.N));
    pre_.resize(D.NF);       // (N, F) before GELU, then GELU's derivative there (what the backward needs)
    act_.resize(D.NF);       // (N, F) after GELU
    tmp_.resize(D.NH);
    if (attn_rate() > 0.0f) attn_a_.resize(D.shape.probs_size());  // (B, heads, T, T) dropped probabilities
    if constexpr (std::is_same_v<Scalar, float>) {
      // The saved activations that are product operands: converted once in the forward, read
      // again by the backward's products (none of them is written after its first product).
      // Pre-LN: LN1(x), LN2(h); Post-LN: x and LN1's output h.
      const bool pre = config_.norm == NormPosition::pre;
      const std::array<const Scalar*, 8> kept{pre ? ln1_.data() : x_.data(), pre ? ln2_.data() : h_.data(), qkv_.data(), qkv_.data() + D.H,
                                              qkv_.data() + 2 * D.H, attn_rate() > 0.0f ? attn_a_.data() : probs_.data(), ctx_.data(),
                                              act_.data()};
      if (kept != kept_activations_) {
        // Buffers moved (another batch size, or freed by a dropped step): the copies of the old
        // addresses would only hold memory.
        gemm_.free_converted();
        kept_activations_ = kept;
      }
      for (const Scalar* w : {params_.in_proj_weight.data(), params_.out_proj_weight.data(), params_.linear1_weight.data(),
                              params_.linear2_weight.data()})
        gemm_.keep_converted(w);
      for (const Scalar* a : kept) gemm_.keep_converted(a);
    }
  }

  // Scratch kept between calls so the backward does not allocate every step.
  void prepare_backward(int batch) {
    const Dims D = dims(batch);
    dbranch_.resize(D.NH);
    dh_.resize(D.NH);
    dwide_.resize(D.NF);
    dqkv_.resize(3 * D.NH);
    dln_.resize(D.NH);
    attn_a_.resize(D.shape.probs_size());  // (B, heads, T, T) dropped probabilities
    attn_b_.resize(D.shape.probs_size());  // (B, heads, T, T) their gradient, then the scores'
  }

  // t1 = Drop(Wo MHA(in) + bo) into tmp_, from the attention input `in` (N, H).
  void attention_branch(const Dims& D, const Scalar* in, const std::uint8_t* valid) {
    const LayerParams<Scalar>& p = params_;
    linear_forward(gemm_, in, p.in_proj_weight.data(), p.in_proj_bias.data(), qkv_.data(), D.N, D.H, 3 * D.H);
    attention_forward(gemm_, qkv_.data(), valid, probs_.data(), attn_a_.data(), ctx_.data(), D.shape, attn_rate(),
                      key(DropoutSite::attention_probs));
    linear_forward(gemm_, ctx_.data(), p.out_proj_weight.data(), p.out_proj_bias.data(), tmp_.data(), D.N, D.H, D.H);
    dropout_apply(tmp_.data(), tmp_.data(), D.NH, 0, hidden_rate(), key(DropoutSite::attention_out));
  }
  // t2 = Drop(W2 GELU(W1 in + b1) + b2) into tmp_.
  void ffn_branch(const Dims& D, const Scalar* in) {
    const LayerParams<Scalar>& p = params_;
    linear_forward(gemm_, in, p.linear1_weight.data(), p.linear1_bias.data(), pre_.data(), D.N, D.H, D.F);
    gelu_forward_with_derivative(pre_.data(), act_.data(), pre_.data(), D.NF, config_.gelu);  // pre_ becomes GELU'(pre)
    linear_forward(gemm_, act_.data(), p.linear2_weight.data(), p.linear2_bias.data(), tmp_.data(), D.N, D.F, D.H);
    dropout_apply(tmp_.data(), tmp_.data(), D.NH, 0, hidden_rate(), key(DropoutSite::ffn_out));
  }
  // The FFN branch's backward from dbranch_ = g * dL/d(out): parameter gradients, and d(in) into dln_.
  void ffn_branch_backward(const Dims& D, const Scalar* in) {
    const LayerParams<Scalar>& p = params_;
    LayerParams<Scalar>& d = grads_;
    dropout_apply(dbranch_.data(), dbranch_.data(), D.NH, 0, hidden_rate(), key(DropoutSite::ffn_out));
    linear_backward(gemm_, dbranch_.data(), act_.data(), p.linear2_weight.data(), dwide_.data(), d.linear2_weight.data(), d.linear2_bias.data(),
                    D.N, D.F, D.H);
    gelu_backward_given(dwide_.data(), pre_.data(), dwide_.data(), D.NF);
    linear_backward(gemm_, dwide_.data(), in, p.linear1_weight.data(), dln_.data(), d.linear1_weight.data(), d.linear1_bias.data(), D.N,
                    D.H, D.F);
  }
  // The attention branch's backward from dbranch_: parameter gradients, and d(in) into dln_.
  void attention_branch_backward(const Dims& D, const Scalar* in) {
    const LayerParams<Scalar>& p = params_;
    LayerParams<Scalar>& d = grads_;
    dropout_apply(dbranch_.data(), dbranch_.data(), D.NH, 0, hidden_rate(), key(DropoutSite::attention_out));
    linear_backward(gemm_, dbranch_.data(), ctx_.data(), p.out_proj_weight.data(), dln_.data(), d.out_proj_weight.data(),
                    d.out_proj_bias.data(), D.N, D.H, D.H);
    attention_backward(gemm_, dln_.data(), qkv_.data(), probs_.data(), attn_a_.data(), attn_b_.data(), dqkv_.data(), D.shape, attn_rate(),
                       key(DropoutSite::attention_probs));
    linear_backward(gemm_, dqkv_.data(), in, p.in_proj_weight.data(), dln_.data(), d.in_proj_weight.data(), d.in_proj_bias.data(), D.N,
                    D.H, 3 * D.H);
  }

  // Pre-LN: h = x + g t1(LN1 x), y = h + g t2(LN2 h).
  void pre_forward(Scalar* y, int batch, const std::uint8_t* valid) {
    const Dims D = dims(batch);
    const LayerParams<Scalar>& p = params_;
    layer_norm_forward(x_.data(), p.norm1_weight.data(), p.norm1_bias.data(), ln1_.data(), mean1_.data(), rstd1_.data(), D.N, D.H,
                       config_.ln_eps);
    attention_branch(D, ln1_.data(), valid);
    add_scaled(h_.data(), x_.data(), D.g, tmp_.data(), D.NH);
    layer_norm_forward(h_.data(), p.norm2_weight.data(), p.norm2_bias.data(), ln2_.data(), mean2_.data(), rstd2_.data(), D.N, D.H,
                       config_.ln_eps);
    ffn_branch(D, ln2_.data());
    add_scaled(y, h_.data(), D.g, tmp_.data(), D.NH);
  }

  void pre_backward(const Scalar* dy, Scalar* dx, int batch) {
    const Dims D = dims(batch);
    const LayerParams<Scalar>& p = params_;
    LayerParams<Scalar>& d = grads_;
    add_scaled(dbranch_.data(), nullptr, D.g, dy, D.NH);
    ffn_branch_backward(D, ln2_.data());
    layer_norm_backward(dln_.data(), h_.data(), mean2_.data(), rstd2_.data(), p.norm2_weight.data(), dh_.data(), d.norm2_weight.data(),
                        d.norm2_bias.data(), D.N, D.H);
    add_then_scale(dh_.data(), dy, D.g, dbranch_.data(), D.NH);
    attention_branch_backward(D, ln1_.data());
    layer_norm_backward(dln_.data(), x_.data(), mean1_.data(), rstd1_.data(), p.norm1_weight.data(), dx, d.norm1_weight.data(),
                        d.norm1_bias.data(), D.N, D.H);
    add_scaled(dx, dx, Scalar(1), dh_.data(), D.NH);
  }

  // Post-LN: h = LN1(x + g t1(x)), y = LN2(h + g t2(h)).
  void post_forward(Scalar* y, int batch, const std::uint8_t* valid) {
    const Dims D = dims(batch);
    const LayerParams<Scalar>& p = params_;
    attention_branch(D, x_.data(), valid);
    add_scaled(ln1_.data(), x_.data(), D.g, tmp_.data(), D.NH);
    layer_norm_forward(ln1_.data(), p.norm1_weight.data(), p.norm1_bias.data(), h_.data(), mean1_.data(), rstd1_.data(), D.N, D.H,
                       config_.ln_eps);
    ffn_branch(D, h_.data());
    add_scaled(ln2_.data(), h_.data(), D.g, tmp_.data(), D.NH);
    layer_norm_forward(ln2_.data(), p.norm2_weight.data(), p.norm2_bias.data(), y, mean2_.data(), rstd2_.data(), D.N, D.H, config_.ln_eps);
  }

  void post_backward(const Scalar* dy, Scalar* dx, int batch) {
    const Dims D = dims(batch);
    const LayerParams<Scalar>& p = params_;
    LayerParams<Scalar>& d = grads_;
    // ds2 = LN2'(dy) into dh_; the FFN branch sees g ds2; dL/dh = ds2 + the branch's d(in).
    layer_norm_backward(dy, ln2_.data(), mean2_.data(), rstd2_.data(), p.norm2_weight.data(), dh_.data(), d.norm2_weight.data(),
                        d.norm2_bias.data(), D.N, D.H);
    add_scaled(dbranch_.data(), nullptr, D.g, dh_.data(), D.NH);
    ffn_branch_backward(D, h_.data());
    add_scaled(dh_.data(), dh_.data(), Scalar(1), dln_.data(), D.NH);
    // ds1 = LN1'(dh) into dx (dy is not read again: dx may equal dy); then the attention branch.
    layer_norm_backward(dh_.data(), ln1_.data(), mean1_.data(), rstd1_.data(), p.norm1_weight.data(), dx, d.norm1_weight.data(),
                        d.norm1_bias.data(), D.N, D.H);
    add_scaled(dbranch_.data(), nullptr, D.g, dx, D.NH);
    attention_branch_backward(D, x_.data());
    add_scaled(dx, dx, Scalar(1), dln_.data(), D.NH);
  }

  LayerConfig config_;
  LayerParams<Scalar> params_;
  LayerParams<Scalar> grads_;
  int batch_ = 0, seq_ = 0;
  LayerStep step_;
  std::vector<int> rows_;
  std::vector<Scalar> x_, ln1_, mean1_, rstd1_, qkv_, probs_, ctx_, h_, ln2_, mean2_, rstd2_, pre_, act_, tmp_;
  std::vector<Scalar> dbranch_, dh_, dwide_, dqkv_, dln_;  // backward scratch
  std::vector<Scalar> attn_a_, attn_b_;                    // attention scratch (B, heads, T, T)
  Gemm gemm_;
  std::vector<std::uint8_t> valid_;
  std::vector<Scalar> gather_x_, gather_y_;
  std::vector<std::uint8_t> gather_valid_;
  std::array<const Scalar*, 8> kept_activations_{};  // the activations kept converted (bf16 products)
};

}  // namespace pld::test
