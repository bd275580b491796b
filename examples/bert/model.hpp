// BERT for masked-language-model pretraining on pld::cpu: token and position embeddings,
// embedding LayerNorm and dropout, L gated Pre-LN (or Post-LN: --norm post, then no final
// LayerNorm, as BERT's original) layers, a final LayerNorm (the Pre-LN encoder's
// output norm), and the MLM head (dense, GELU, LayerNorm, decoder tied to the token embeddings
// plus a bias). The head runs only on the masked positions; the loss is their mean cross-entropy.
// The encoder part (embeddings .. final LayerNorm) is separate so fine-tuning heads reuse it.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mlm_data.hpp"
#include "pld/cpu.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

struct ModelConfig {
  int vocab = 8192;
  int max_len = 128;
  int layers = 4;
  int hidden = 256;
  int heads = 4;
  int ffn = 0;  // 0 = 4H
  float dropout = 0.1f;
  double ln_eps = 1e-12;  // BERT's
  std::uint64_t seed = 1;
  pld::cpu::Precision precision = pld::cpu::Precision::fp32;  // of every product's operands (fp32 accumulation)
  pld::NormPosition norm = pld::NormPosition::pre;            // post: BERT's Post-LN layers, no final LayerNorm

  pld::cpu::LayerConfig layer_config() const {
    pld::cpu::LayerConfig c;
    c.hidden = hidden;
    c.heads = heads;
    c.ffn = ffn;
    c.ln_eps = ln_eps;
    c.attention_dropout = dropout;
    c.hidden_dropout = dropout;
    c.norm = norm;
    return c;
  }
};

// One trainable tensor: its value, its gradient, the encoder layer it belongs to (-1: none) and
// whether weight decay applies (not to biases and LayerNorm).
struct Param {
  std::string name;
  float* value;
  float* grad;
  std::size_t size;
  int layer;
  bool decay;
};

// A vector with its gradient.
struct Tensor {
  std::vector<float> w, g;
  explicit Tensor(std::size_t n = 0, float v = 0.0f) : w(n, v), g(n, 0.0f) {}
};

// The example's own tensors use step 1 of the param_init stream (the layers use step 0).
inline void init_normal(std::vector<float>& w, std::uint64_t seed, std::uint32_t tensor_id, double std_dev = 0.02) {
  pld::cpu::fill_normal(w, seed, 1, tensor_id, std_dev);
}

// Encoder: ids (B, T) -> hidden (B*T, H) after the final LayerNorm.
class Encoder {
 public:
  explicit Encoder(const ModelConfig& c)
      : c_(c),
        tok_(static_cast<std::size_t>(c.vocab) * c.hidden),
        pos_(static_cast<std::size_t>(c.max_len) * c.hidden),
        emb_ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        emb_ln_b_(static_cast<std::size_t>(c.hidden)),
        out_ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        out_ln_b_(static_cast<std::size_t>(c.hidden)) {
    if (c.vocab <= kNumSpecial) pld::detail::throw_error("vocabulary size must be > ", kNumSpecial, ", got ", c.vocab);
    if (c.layers <= 0 || c.layers > 1000) pld::detail::throw_error("layers must be in 1..1000, got ", c.layers);
    if (c.max_len < 8 || c.max_len > 4096) pld::detail::throw_error("max_len must be in 8..4096, got ", c.max_len);
    c.layer_config().validate();
    init_normal(tok_.w, c.seed, 1000);
    init_normal(pos_.w, c.seed, 1001);
    for (int l = 0; l < c.layers; ++l) {
      layers_.push_back(std::make_unique<pld::cpu::PreLnLayer<float>>(c.layer_config(), c.precision));
      layers_.back()->params().init_normal(c.seed + 7919u * static_cast<std::uint64_t>(l + 1));
    }
  }

  const ModelConfig& config() const { return c_; }
  std::vector<float>& token_embedding() { return tok_.w; }
  std::vector<float>& token_embedding_grad() { return tok_.g; }
  pld::cpu::PreLnLayer<float>& layer(int l) { return *layers_[static_cast<std::size_t>(l)]; }
  // Wall time spent inside the encoder layers (forward and backward) since construction.
  double layer_seconds() const { return layer_seconds_; }

  void collect(std::vector<Param>& out) {
    out.push_back({"embeddings.word_embeddings.weight", tok_.w.data(), tok_.g.data(), tok_.w.size(), -1, true});
    out.push_back({"embeddings.position_embeddings.weight", pos_.w.data(), pos_.g.data(), pos_.w.size(), -1, true});
    out.push_back({"embeddings.LayerNorm.weight", emb_ln_w_.w.data(), emb_ln_w_.g.data(), emb_ln_w_.w.size(), -1, false});
    out.push_back({"embeddings.LayerNorm.bias", emb_ln_b_.w.data(), emb_ln_b_.g.data(), emb_ln_b_.w.size(), -1, false});
    for (int l = 0; l < c_.layers; ++l) {
      auto ps = layers_[static_cast<std::size_t>(l)]->params().tensors();
      auto gs = layers_[static_cast<std::size_t>(l)]->grads().tensors();
      for (std::size_t t = 0; t < ps.size(); ++t) {
        const bool decay = ps[t].name.find("bias") == std::string::npos && ps[t].name.find("norm") == std::string::npos;
        out.push_back({"encoder.layer." + std::to_string(l) + "." + ps[t].name, static_cast<float*>(ps[t].data),
                       static_cast<float*>(gs[t].data), ps[t].size, l, decay});
      }
    }
    if (c_.norm == pld::NormPosition::post) return;  // Post-LN layers end in a LayerNorm already
    out.push_back({"encoder.LayerNorm.weight", out_ln_w_.w.data(), out_ln_w_.g.data(), out_ln_w_.w.size(), -1, false});
    out.push_back({"encoder.LayerNorm.bias", out_ln_b_.w.data(), out_ln_b_.g.data(), out_ln_b_.w.size(), -1, false});
  }

  // hidden (B*T, H) written. `plan` decides which layers run (and their scale); `seed`/`step`
  // key the dropout masks; plan.training turns dropout on.
  // `row_offset`: in a data-parallel run the plan is the global batch's and these B rows start at
  // global row row_offset (per-sample plans pick this shard's rows).
  void forward(const std::vector<int>& ids, const std::vector<std::uint8_t>& valid, int B, int T, const pld::LayerPlan& plan,
               std::uint64_t seed, std::vector<float>& hidden, int row_offset = 0) {
    const int H = c_.hidden, N = B * T;
    if (T > c_.max_len) pld::detail::throw_error("sequence length ", T, " exceeds max_len ", c_.max_len);
    if (plan.num_layers() != c_.layers) pld::detail::throw_error("plan has ", plan.num_layers(), " layers, model ", c_.layers);
    B_ = B;
    T_ = T;
    ids_ = ids;
    training_ = plan.training;
    seed_ = seed;
    step_ = plan.step;
    const auto NH = static_cast<std::size_t>(N) * static_cast<std::size_t>(H);
    emb_sum_.resize(NH);
    for (int n = 0; n < N; ++n) {
      const int id = ids[static_cast<std::size_t>(n)];
      if (id < 0 || id >= c_.vocab) pld::detail::throw_error("token id ", id, " outside the vocabulary of ", c_.vocab);
      const float* te = tok_.w.data() + static_cast<std::size_t>(id) * H;
      const float* pe = pos_.w.data() + static_cast<std::size_t>(n % T) * H;
      float* e = emb_sum_.data() + static_cast<std::size_t>(n) * H;
      for (int h = 0; h < H; ++h) e[h] = te[h] + pe[h];
    }
    x_.resize(NH);
    emb_mean_.resize(static_cast<std::size_t>(N));
    emb_rstd_.resize(static_cast<std::size_t>(N));
    pld::cpu::layer_norm_forward(emb_sum_.data(), emb_ln_w_.w.data(), emb_ln_b_.w.data(), x_.data(), emb_mean_.data(), emb_rstd_.data(), N, H, c_.ln_eps);
    pld::cpu::dropout_apply(x_.data(), x_.data(), NH, 0, training_ ? c_.dropout : 0.0f, emb_key());
    // The layers run in place on x_.
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = 0; l < c_.layers; ++l) {
      pld::cpu::LayerStep s = pld::cpu::LayerStep::from_plan(plan, l, seed);
      if (s.rows) s.rows += row_offset;
      layers_[static_cast<std::size_t>(l)]->forward(x_.data(), x_.data(), B, T, valid.data(), s);
    }
    layer_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    hidden.resize(NH);
    if (c_.norm == pld::NormPosition::post) {  // BERT's encoder: the last layer's LN2 is the output
      std::copy(x_.begin(), x_.end(), hidden.begin());
      return;
    }
    out_mean_.resize(static_cast<std::size_t>(N));
    out_rstd_.resize(static_cast<std::size_t>(N));
    pld::cpu::layer_norm_forward(x_.data(), out_ln_w_.w.data(), out_ln_b_.w.data(), hidden.data(), out_mean_.data(), out_rstd_.data(), N, H, c_.ln_eps);
  }

  // dhidden (B*T, H) of the last forward in; parameter gradients accumulate.
  // `layer_done(l)`, when given, runs right after layer l's backward: its gradients are final
  // for this micro-batch (a data-parallel run starts their all-reduce there).
  void backward(std::vector<float>& dhidden, const std::function<void(int)>& layer_done = nullptr) {
    const int H = c_.hidden, N = B_ * T_;
    const auto NH = static_cast<std::size_t>(N) * static_cast<std::size_t>(H);
    dx_.resize(NH);
    if (c_.norm == pld::NormPosition::post) {
      std::copy(dhidden.begin(), dhidden.end(), dx_.begin());
    } else {
      pld::cpu::layer_norm_backward(dhidden.data(), x_.data(), out_mean_.data(), out_rstd_.data(), out_ln_w_.w.data(), dx_.data(),
                                    out_ln_w_.g.data(), out_ln_b_.g.data(), N, H);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (int l = c_.layers - 1; l >= 0; --l) {
      layers_[static_cast<std::size_t>(l)]->backward(dx_.data(), dx_.data());
      if (layer_done) layer_done(l);
    }
    layer_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    pld::cpu::dropout_apply(dx_.data(), dx_.data(), NH, 0, training_ ? c_.dropout : 0.0f, emb_key());
    demb_.resize(NH);
    pld::cpu::layer_norm_backward(dx_.data(), emb_sum_.data(), emb_mean_.data(), emb_rstd_.data(), emb_ln_w_.w.data(), demb_.data(),
                                  emb_ln_w_.g.data(), emb_ln_b_.g.data(), N, H);
    for (int n = 0; n < N; ++n) {
      const float* d = demb_.data() + static_cast<std::size_t>(n) * H;
      float* gt = tok_.g.data() + static_cast<std::size_t>(ids_[static_cast<std::size_t>(n)]) * H;
      float* gp = pos_.g.data() + static_cast<std::size_t>(n % T_) * H;
      for (int h = 0; h < H; ++h) {
        gt[h] += d[h];
        gp[h] += d[h];
      }
    }
  }

 private:
  pld::cpu::DropoutKey emb_key() const { return {seed_, step_, 0xFFFFu, pld::cpu::DropoutSite::attention_out}; }

  ModelConfig c_;
  Tensor tok_, pos_, emb_ln_w_, emb_ln_b_, out_ln_w_, out_ln_b_;
  std::vector<std::unique_ptr<pld::cpu::PreLnLayer<float>>> layers_;
  int B_ = 0, T_ = 0;
  bool training_ = false;
  double layer_seconds_ = 0.0;
  std::uint64_t seed_ = 0;
  std::int64_t step_ = 0;
  std::vector<int> ids_;  // for the embedding gradients
  std::vector<float> emb_sum_, emb_mean_, emb_rstd_, x_, out_mean_, out_rstd_, dx_, demb_;
};

struct MlmResult {
  double loss = 0.0;  // mean cross-entropy over the masked positions
  int correct = 0;    // argmax == target
  int predicted = 0;  // masked positions
};

// What the MLM head and the fine-tuning classifiers share: the rows that carry a label, their
// hidden states gathered into one block, softmax cross-entropy over their logits, and the
// gradient scattered back to (B*T, H).
class LabelledRows {
 public:
  // Selects the rows with target >= 0 and gathers their hidden states (M, H).
  int gather(const std::vector<float>& hidden, const std::vector<int>& target, int H) {
    rows_.clear();
    labels_.clear();
    for (std::size_t i = 0; i < target.size(); ++i)
      if (target[i] >= 0) {
        rows_.push_back(static_cast<int>(i));
        labels_.push_back(target[i]);
      }
    const auto M = rows_.size();
    h_.resize(M * static_cast<std::size_t>(H));
    for (std::size_t m = 0; m < M; ++m)
      std::copy_n(hidden.data() + static_cast<std::size_t>(rows_[m]) * H, H, h_.data() + m * H);
    return static_cast<int>(M);
  }
  const std::vector<float>& gathered() const { return h_; }
  const std::vector<int>& rows() const { return rows_; }
  const std::vector<int>& labels() const { return labels_; }

  // Softmax cross-entropy of logits (M, C) against the labels; pred[m] = argmax. With `grad`,
  // logits are overwritten by d(loss)/d(logits) * grad_scale (loss = mean over the M rows).
  MlmResult cross_entropy(float* logits, int C, double grad_scale, bool grad, std::vector<int>& pred) {
    const int M = static_cast<int>(rows_.size());
    const double scale = grad_scale / M;
    row_loss_.resize(static_cast<std::size_t>(M));
    pred.resize(static_cast<std::size_t>(M));
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; ++m) {
      float* l = logits + static_cast<std::size_t>(m) * C;
      const int tgt = labels_[static_cast<std::size_t>(m)];
      int arg = 0;
      for (int v = 1; v < C; ++v)
        if (l[v] > l[arg]) arg = v;
      const float mx = l[arg];
      double sum = 0.0;
      for (int v = 0; v < C; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
      row_loss_[static_cast<std::size_t>(m)] = std::log(sum) - static_cast<double>(l[tgt] - mx);
      pred[static_cast<std::size_t>(m)] = arg;
      if (grad) {
        const double inv = 1.0 / sum;
        for (int v = 0; v < C; ++v) l[v] = static_cast<float>(scale * (std::exp(static_cast<double>(l[v] - mx)) * inv - (v == tgt ? 1.0 : 0.0)));
      }
    }
    MlmResult res;
    res.predicted = M;
    double loss = 0.0;  // summed in row order: the same bits whatever the thread count
    for (int m = 0; m < M; ++m) {
      loss += row_loss_[static_cast<std::size_t>(m)];
      res.correct += pred[static_cast<std::size_t>(m)] == labels_[static_cast<std::size_t>(m)] ? 1 : 0;
    }
    res.loss = M > 0 ? loss / M : 0.0;
    return res;
  }

  // dhidden (B*T, H): d (M, H) at the selected rows, zero elsewhere.
  void scatter(const std::vector<float>& d, int H, std::vector<float>& dhidden) const {
    for (std::size_t m = 0; m < rows_.size(); ++m)
      std::copy_n(d.data() + m * H, H, dhidden.data() + static_cast<std::size_t>(rows_[m]) * H);
  }

 private:
  std::vector<int> rows_, labels_;
  std::vector<float> h_;
  std::vector<double> row_loss_;
};

// The MLM head over the masked rows of the encoder's output; decoder tied to the token embedding.
class MlmHead {
 public:
  explicit MlmHead(const ModelConfig& c)
      : c_(c),
        gemm_(c.precision),
        dense_w_(static_cast<std::size_t>(c.hidden) * c.hidden),
        dense_b_(static_cast<std::size_t>(c.hidden)),
        ln_w_(static_cast<std::size_t>(c.hidden), 1.0f),
        ln_b_(static_cast<std::size_t>(c.hidden)),
        dec_b_(static_cast<std::size_t>(c.vocab)) {
    init_normal(dense_w_.w, c.seed, 1002);
  }

  void collect(std::vector<Param>& out) {
    out.push_back({"cls.predictions.transform.dense.weight", dense_w_.w.data(), dense_w_.g.data(), dense_w_.w.size(), -1, true});
    out.push_back({"cls.predictions.transform.dense.bias", dense_b_.w.data(), dense_b_.g.data(), dense_b_.w.size(), -1, false});
    out.push_back({"cls.predictions.transform.LayerNorm.weight", ln_w_.w.data(), ln_w_.g.data(), ln_w_.w.size(), -1, false});
    out.push_back({"cls.predictions.transform.LayerNorm.bias", ln_b_.w.data(), ln_b_.g.data(), ln_b_.w.size(), -1, false});
    out.push_back({"cls.predictions.bias", dec_b_.w.data(), dec_b_.g.data(), dec_b_.w.size(), -1, false});
  }

  // Loss over the positions with target >= 0. With `grad_scale` > 0 the backward runs at once:
  // dhidden (B*T, H) is written (zero at unmasked rows), parameter gradients (and the tied
  // embedding's) accumulate, all scaled by grad_scale / masked (grad_scale = 1 / accumulation).
  MlmResult forward_backward(const std::vector<float>& hidden, const std::vector<int>& target, std::vector<float>& emb,
                             std::vector<float>& emb_grad, double grad_scale, std::vector<float>* dhidden) {
    const int H = c_.hidden, V = c_.vocab;
    const int M = sel_.gather(hidden, target, H);
    if (dhidden) dhidden->assign(hidden.size(), 0.0f);
    if (M == 0) return MlmResult{0.0, 0, 0};
    const auto MH = static_cast<std::size_t>(M) * static_cast<std::size_t>(H);
    const std::vector<float>& h = sel_.gathered();
    z_.resize(MH);
    a_.resize(MH);
    n_.resize(MH);
    mean_.resize(static_cast<std::size_t>(M));
    rstd_.resize(static_cast<std::size_t>(M));
    logits_.resize(static_cast<std::size_t>(M) * static_cast<std::size_t>(V));
    pld::cpu::linear_forward(gemm_, h.data(), dense_w_.w.data(), dense_b_.w.data(), z_.data(), M, H, H);
    pld::cpu::gelu_forward_with_derivative(z_.data(), a_.data(), z_.data(), MH, pld::cpu::GeluForm::erf);  // z_ becomes GELU'(z)
    pld::cpu::layer_norm_forward(a_.data(), ln_w_.w.data(), ln_b_.w.data(), n_.data(), mean_.data(), rstd_.data(), M, H, c_.ln_eps);
    pld::cpu::linear_forward(gemm_, n_.data(), emb.data(), dec_b_.w.data(), logits_.data(), M, H, V);
    // Softmax cross-entropy; logits_ becomes d(loss)/d(logits) when a backward follows.
    const MlmResult res = sel_.cross_entropy(logits_.data(), V, grad_scale, dhidden != nullptr, pred_);
    if (!dhidden) return res;
    // Backward: decoder (tied), LayerNorm, GELU, dense; then scatter to the masked rows.
    dn_.resize(MH);
    pld::cpu::linear_backward(gemm_, logits_.data(), n_.data(), emb.data(), dn_.data(), emb_grad.data(), dec_b_.g.data(), M, H, V);
    da_.resize(MH);
    pld::cpu::layer_norm_backward(dn_.data(), a_.data(), mean_.data(), rstd_.data(), ln_w_.w.data(), da_.data(), ln_w_.g.data(), ln_b_.g.data(), M, H);
    pld::cpu::gelu_backward_given(da_.data(), z_.data(), z_.data(), MH);  // z_ becomes dz
    pld::cpu::linear_backward(gemm_, z_.data(), h.data(), dense_w_.w.data(), dn_.data(), dense_w_.g.data(), dense_b_.g.data(), M, H, H);
    sel_.scatter(dn_, H, *dhidden);
    return res;
  }

 private:
  ModelConfig c_;
  pld::cpu::Gemm gemm_;
  Tensor dense_w_, dense_b_, ln_w_, ln_b_, dec_b_;
  LabelledRows sel_;
  std::vector<int> pred_;
  std::vector<float> z_, a_, n_, mean_, rstd_, logits_, dn_, da_;
};

// Encoder + MLM head, with one parameter list for the optimizer and the checkpoint.
class BertMlm {
 public:
  explicit BertMlm(const ModelConfig& c) : encoder(c), head(c) {
    encoder.collect(params_);
    head.collect(params_);
  }
  std::vector<Param>& params() { return params_; }
  void zero_grad() {
    for (auto& p : params_) std::fill(p.grad, p.grad + p.size, 0.0f);
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
    const MlmResult r = head.forward_backward(hidden_, b.target, encoder.token_embedding(), encoder.token_embedding_grad(), grad_scale,
                                              backward ? &dhidden_ : nullptr);
    if (backward) encoder.backward(dhidden_, layer_done);
    return r;
  }

  Encoder encoder;
  MlmHead head;

 private:
  std::vector<Param> params_;
  std::vector<float> hidden_, dhidden_;
};

}  // namespace bert
