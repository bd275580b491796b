// BERT for masked-language-model pretraining, written once over a backend (cpu_backend.hpp says
// what a backend provides): token and position embeddings, embedding LayerNorm and dropout, L
// gated Pre-LN (or Post-LN: --norm post, then no final LayerNorm, as BERT's original) layers, a
// final LayerNorm (the Pre-LN encoder's output norm), and the MLM head (dense, GELU, LayerNorm,
// decoder tied to the token embeddings plus a bias). The head runs only on the masked positions;
// the loss is their mean cross-entropy. The encoder part (embeddings .. final LayerNorm) is
// separate so fine-tuning heads reuse it.
//
// This file is the model's algorithm only: which tensors, which steps in which order, what is
// kept for the backward. The host decides what depends on the batch (token ids are checked here,
// the masked rows are selected here); the backend runs every step on its own memory.
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "mlm_data.hpp"
#include "model_config.hpp"
#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

// Encoder: ids (B, T) -> hidden (B*T, H) after the final LayerNorm.
template <class Backend>
class BasicEncoder {
 public:
  using Act = typename Backend::Act;
  template <class E>
  using Buffer = typename Backend::template Buffer<E>;
  using Tensor = typename Backend::Tensor;

  BasicEncoder(const ModelConfig& c, Backend& be)
      : c_((check(c), c)),
        be_(be),
        tok_(static_cast<std::size_t>(c.vocab) * c.hidden),
        pos_(static_cast<std::size_t>(c.max_len) * c.hidden),
        emb_ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        emb_ln_b_(static_cast<std::size_t>(c.hidden)),
        out_ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        out_ln_b_(static_cast<std::size_t>(c.hidden)),
        layers_(c, be) {
    Backend::init_normal(tok_, c.seed, kTokenEmbedding);
    Backend::init_normal(pos_, c.seed, kPositionEmbedding);
  }

  const ModelConfig& config() const { return c_; }
  Tensor& token_embedding() { return tok_; }
  typename Backend::Layers& layers() { return layers_; }
  // Wall time spent inside the encoder layers (forward and backward) since construction.
  double layer_seconds() const { return layers_.seconds(); }

  void collect(std::vector<typename Backend::Param>& out) {
    out.push_back(Backend::param("embeddings.word_embeddings.weight", tok_, -1, true));
    out.push_back(Backend::param("embeddings.position_embeddings.weight", pos_, -1, true));
    out.push_back(Backend::param("embeddings.LayerNorm.weight", emb_ln_w_, -1, false));
    out.push_back(Backend::param("embeddings.LayerNorm.bias", emb_ln_b_, -1, false));
    layers_.collect(out);
    if (c_.norm == pld::NormPosition::post) return;  // Post-LN layers end in a LayerNorm already
    out.push_back(Backend::param("encoder.LayerNorm.weight", out_ln_w_, -1, false));
    out.push_back(Backend::param("encoder.LayerNorm.bias", out_ln_b_, -1, false));
  }

  // hidden (B*T, H) written. `plan` decides which layers run (and their scale); `seed`/`step`
  // key the dropout masks; plan.training turns dropout on.
  // `row_offset`: in a data-parallel run the plan is the global batch's and these B rows start at
  // global row row_offset (per-sample plans pick this shard's rows; dropout masks are keyed by
  // global rows, pld::LayerStep::first_row).
  void forward(const std::vector<int>& ids, const std::vector<std::uint8_t>& valid, int B, int T, const pld::LayerPlan& plan,
               std::uint64_t seed, Buffer<Act>& hidden, int row_offset = 0) {
    const int H = c_.hidden, N = B * T;
    if (T > c_.max_len) pld::detail::throw_error("sequence length ", T, " exceeds max_len ", c_.max_len);
    if (plan.num_layers() != c_.layers) pld::detail::throw_error("plan has ", plan.num_layers(), " layers, model ", c_.layers);
    for (int n = 0; n < N; ++n) {
      const int id = ids[static_cast<std::size_t>(n)];
      if (id < 0 || id >= c_.vocab) pld::detail::throw_error("token id ", id, " outside the vocabulary of ", c_.vocab);
    }
    B_ = B;
    T_ = T;
    training_ = plan.training;
    seed_ = seed;
    step_ = plan.step;
    const auto NH = static_cast<std::size_t>(N) * static_cast<std::size_t>(H);
    // The embeddings' dropout is keyed by global rows too (as the layers'): N ranks draw what one process draws.
    drop_offset_ = static_cast<std::uint64_t>(row_offset) * static_cast<std::uint64_t>(T) * static_cast<std::uint64_t>(H);
    emb_sum_.resize(NH);
    be_.embed(ids, tok_, pos_, emb_sum_.data(), N, T, H);
    x_.resize(NH);
    emb_mean_.resize(static_cast<std::size_t>(N));
    emb_rstd_.resize(static_cast<std::size_t>(N));
    be_.layer_norm_forward(emb_sum_.data(), emb_ln_w_, emb_ln_b_, x_.data(), emb_mean_.data(), emb_rstd_.data(), N, H, c_.ln_eps);
    be_.dropout(x_.data(), x_.data(), NH, dropout_rate(), seed_, step_, drop_offset_);
    layers_.forward(x_.data(), B, T, valid, plan, seed, row_offset);  // in place on x_
    hidden.resize(NH);
    if (c_.norm == pld::NormPosition::post) {  // BERT's encoder: the last layer's LN2 is the output
      be_.copy(hidden.data(), x_.data(), NH);
      return;
    }
    out_mean_.resize(static_cast<std::size_t>(N));
    out_rstd_.resize(static_cast<std::size_t>(N));
    be_.layer_norm_forward(x_.data(), out_ln_w_, out_ln_b_, hidden.data(), out_mean_.data(), out_rstd_.data(), N, H, c_.ln_eps);
  }

  // dhidden (B*T, H) of the last forward in; parameter gradients accumulate.
  // `layer_done(l)`, when given, runs right after layer l's backward: its gradients are final
  // for this micro-batch (a data-parallel run starts their all-reduce there).
  void backward(Buffer<Act>& dhidden, const std::function<void(int)>& layer_done = nullptr) {
    const int H = c_.hidden, N = B_ * T_;
    const auto NH = static_cast<std::size_t>(N) * static_cast<std::size_t>(H);
    dx_.resize(NH);
    if (c_.norm == pld::NormPosition::post) {
      be_.copy(dx_.data(), dhidden.data(), NH);
    } else {
      be_.layer_norm_backward(dhidden.data(), x_.data(), out_mean_.data(), out_rstd_.data(), out_ln_w_, out_ln_b_, dx_.data(), N, H);
    }
    layers_.backward(dx_.data(), layer_done);
    be_.dropout(dx_.data(), dx_.data(), NH, dropout_rate(), seed_, step_, drop_offset_);
    demb_.resize(NH);
    be_.layer_norm_backward(dx_.data(), emb_sum_.data(), emb_mean_.data(), emb_rstd_.data(), emb_ln_w_, emb_ln_b_, demb_.data(), N, H);
    be_.embed_backward(demb_.data(), tok_, pos_, N, H);
  }

 private:
  static void check(const ModelConfig& c) {
    if (c.vocab <= kNumSpecial) pld::detail::throw_error("vocabulary size must be > ", kNumSpecial, ", got ", c.vocab);
    if (c.layers <= 0 || c.layers > 1000) pld::detail::throw_error("layers must be in 1..1000, got ", c.layers);
    if (c.max_len < 8 || c.max_len > 4096) pld::detail::throw_error("max_len must be in 8..4096, got ", c.max_len);
    c.layer_config().validate();
  }
  float dropout_rate() const { return training_ ? c_.dropout : 0.0f; }

  ModelConfig c_;
  Backend& be_;
  Tensor tok_, pos_, emb_ln_w_, emb_ln_b_, out_ln_w_, out_ln_b_;
  typename Backend::Layers layers_;
  int B_ = 0, T_ = 0;
  bool training_ = false;
  std::uint64_t seed_ = 0;
  std::int64_t step_ = 0;
  std::uint64_t drop_offset_ = 0;  // the first element's place in the global batch
  Buffer<Act> emb_sum_, x_, dx_, demb_;
  Buffer<float> emb_mean_, emb_rstd_, out_mean_, out_rstd_;
};

// The MLM head over the masked rows of the encoder's output; decoder tied to the token embedding.
template <class Backend>
class BasicMlmHead {
 public:
  using Act = typename Backend::Act;
  template <class E>
  using Buffer = typename Backend::template Buffer<E>;
  using Tensor = typename Backend::Tensor;

  BasicMlmHead(const ModelConfig& c, Backend& be)
      : c_(c),
        be_(be),
        gemm_(be),
        dense_w_(static_cast<std::size_t>(c.hidden) * c.hidden),
        dense_b_(static_cast<std::size_t>(c.hidden)),
        ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        ln_b_(static_cast<std::size_t>(c.hidden)),
        dec_b_(static_cast<std::size_t>(c.vocab)) {
    Backend::init_normal(dense_w_, c.seed, kHeadDense);
  }

  void collect(std::vector<typename Backend::Param>& out) {
    out.push_back(Backend::param("cls.predictions.transform.dense.weight", dense_w_, -1, true));
    out.push_back(Backend::param("cls.predictions.transform.dense.bias", dense_b_, -1, false));
    out.push_back(Backend::param("cls.predictions.transform.LayerNorm.weight", ln_w_, -1, false));
    out.push_back(Backend::param("cls.predictions.transform.LayerNorm.bias", ln_b_, -1, false));
    out.push_back(Backend::param("cls.predictions.bias", dec_b_, -1, false));
  }

  // Loss over the positions with target >= 0. With `dhidden` the backward runs at once:
  // dhidden (B*T, H) is written (zero at unmasked rows), parameter gradients (and the tied
  // embedding's, `emb`) accumulate, all scaled by grad_scale / masked (grad_scale = 1 / accumulation).
  MlmResult forward_backward(const Buffer<Act>& hidden, const std::vector<int>& target, Tensor& emb, double grad_scale,
                             Buffer<Act>* dhidden) {
    const int H = c_.hidden, V = c_.vocab;
    const int M = sel_.select(target);
    if (dhidden) {
      dhidden->resize(hidden.size());
      be_.zero(dhidden->data(), hidden.size());
    }
    if (M == 0) return MlmResult{0.0, 0, 0};
    const auto MH = static_cast<std::size_t>(M) * static_cast<std::size_t>(H);
    h_.resize(MH);
    be_.gather_rows(hidden.data(), sel_.rows, H, h_.data());
    z_.resize(MH);
    a_.resize(MH);
    n_.resize(MH);
    mean_.resize(static_cast<std::size_t>(M));
    rstd_.resize(static_cast<std::size_t>(M));
    logits_.resize(static_cast<std::size_t>(M) * static_cast<std::size_t>(V));
    be_.linear_forward(gemm_, h_.data(), dense_w_, dense_b_, z_.data(), M, H, H);
    be_.gelu_forward(z_.data(), a_.data(), MH);  // z_ becomes what the GELU backward needs
    be_.layer_norm_forward(a_.data(), ln_w_, ln_b_, n_.data(), mean_.data(), rstd_.data(), M, H, c_.ln_eps);
    be_.linear_forward(gemm_, n_.data(), emb, dec_b_, logits_.data(), M, H, V);
    // Softmax cross-entropy; logits_ becomes d(loss)/d(logits) when a backward follows.
    const MlmResult res = be_.cross_entropy(logits_.data(), sel_.labels, V, grad_scale, dhidden != nullptr);
    if (!dhidden) return res;
    // Backward: decoder (tied), LayerNorm, GELU, dense; then scatter to the masked rows.
    dn_.resize(MH);
    be_.linear_backward(gemm_, logits_.data(), n_.data(), emb, dec_b_, dn_.data(), M, H, V);
    da_.resize(MH);
    be_.layer_norm_backward(dn_.data(), a_.data(), mean_.data(), rstd_.data(), ln_w_, ln_b_, da_.data(), M, H);
    be_.gelu_backward(da_.data(), z_.data(), z_.data(), MH);  // z_ becomes dz
    be_.linear_backward(gemm_, z_.data(), h_.data(), dense_w_, dense_b_, dn_.data(), M, H, H);
    be_.scatter_rows(dn_.data(), sel_.rows, H, dhidden->data());
    return res;
  }

 private:
  ModelConfig c_;
  Backend& be_;
  typename Backend::Gemm gemm_;
  Tensor dense_w_, dense_b_, ln_w_, ln_b_, dec_b_;
  LabelledSelection sel_;
  Buffer<Act> h_, z_, a_, n_, logits_, dn_, da_;
  Buffer<float> mean_, rstd_;
};

// Encoder + MLM head, with one parameter list for the optimizer and the checkpoint.
template <class Backend>
class BasicBertMlm {
 public:
  using Act = typename Backend::Act;
  template <class E>
  using Buffer = typename Backend::template Buffer<E>;

  explicit BasicBertMlm(const ModelConfig& c) : backend(c), encoder(c, backend), head(c, backend) {
    encoder.collect(params_);
    head.collect(params_);
  }
  BasicBertMlm(const BasicBertMlm&) = delete;  // the parts hold the backend by reference
  BasicBertMlm& operator=(const BasicBertMlm&) = delete;

  std::vector<typename Backend::Param>& params() { return params_; }
  void zero_grad() {
    for (auto& p : params_) backend.zero(p.grad, p.size);
  }
  std::size_t num_parameters() const {
    std::size_t n = 0;
    for (const auto& p : params_) n += p.size;
    return n;
  }

  // One micro-batch: forward, loss, and (when `backward`) the gradients, scaled by grad_scale.
  MlmResult step(const MlmBatch& b, const pld::LayerPlan& plan, std::uint64_t seed, bool backward, double grad_scale = 1.0,
                 int row_offset = 0, const std::function<void(int)>& layer_done = nullptr) {
    encoder.forward(b.input, b.valid, b.batch, b.seq, plan, seed, hidden_, row_offset);
    const MlmResult r = head.forward_backward(hidden_, b.target, encoder.token_embedding(), grad_scale, backward ? &dhidden_ : nullptr);
    if (backward) encoder.backward(dhidden_, layer_done);
    return r;
  }

  Backend backend;
  BasicEncoder<Backend> encoder;
  BasicMlmHead<Backend> head;

 private:
  std::vector<typename Backend::Param> params_;
  Buffer<Act> hidden_, dhidden_;
};

}  // namespace bert
