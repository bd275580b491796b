// pld-bert's CPU backend: what model_logic.hpp's BERT runs on when it runs on pld::cpu. The
// model's own storage and arithmetic are fp32 (the products' operands fp32 or bf16,
// ModelConfig::precision); the encoder layers (Pre-LN or Post-LN) store fp32 with fp32 products
// and bf16 with bf16 products (Layers, below). Every buffer is host memory, so the model's public
// buffers are std::vector<float>.
//
// A backend provides (model_logic.hpp names these; a GPU backend provides the same):
//   Act, Buffer<E>, Tensor (value + fp32 gradient), Gemm, Layers (the gated stack),
//   init_normal, param (the optimizer's/checkpoint's entry), and one member function per step of
//   the model: embed / embed_backward, layer_norm_forward / _backward, dropout, copy, zero,
//   gather_rows / scatter_rows, linear_forward / _backward, gelu_forward / _backward,
//   cross_entropy.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "model_config.hpp"
#include "pld/cpu.hpp"
#include "pld/cpu/fast_math.hpp"
#include "pld/cpu/reduce.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

// A vector with its gradient.
struct Tensor {
  std::vector<float> w, g;
  explicit Tensor(std::size_t n = 0, float v = 0.0f) : w(n, v), g(n, 0.0f) {}
};

inline void init_normal(std::vector<float>& w, std::uint64_t seed, std::uint32_t tensor_id, double std_dev = 0.02) {
  pld::cpu::fill_normal(w, seed, 1, tensor_id, std_dev);
}

// Softmax cross-entropy of logits (M, C) against `labels`; pred[m] = argmax (the first of equal
// maxima). With `grad`, logits are overwritten by d(loss)/d(logits) * grad_scale, loss = mean
// over the M rows. As the GPU's kernel (pld/cuda/mlm_loss.cuh): the exponentials in fp32
// (pld::cpu::fast::exp, vectorized, one per logit), their sum in double lanes; the row losses
// summed in row order: the same bits at any thread count.
inline MlmResult softmax_cross_entropy(float* logits, const std::vector<int>& labels, int C, double grad_scale, bool grad,
                                       std::vector<int>& pred, std::vector<double>& row_loss) {
  namespace pd = pld::cpu::detail;
  const int M = static_cast<int>(labels.size());
  const auto scale = static_cast<float>(grad_scale / M);
  row_loss.resize(static_cast<std::size_t>(M));
  pred.resize(static_cast<std::size_t>(M));
#pragma omp parallel
  {
    std::vector<float> e(grad ? 0 : static_cast<std::size_t>(C));  // without grad the logits stay
#pragma omp for schedule(static)
    for (int m = 0; m < M; ++m) {
      float* l = logits + static_cast<std::size_t>(m) * C;
      float* ex = grad ? l : e.data();
      const int tgt = labels[static_cast<std::size_t>(m)];
      const float mx = pd::lane_max<float>(l, C, -std::numeric_limits<float>::infinity());
      const int arg = std::min(static_cast<int>(std::find(l, l + C, mx) - l), C - 1);  // C - 1: all NaN
      const float at_tgt = l[tgt] - mx;
      for (int v = 0; v < C; ++v) ex[v] = pld::cpu::fast::exp(l[v] - mx);
      const double sum = pd::lane_sum<double>(C, [&](int v) { return static_cast<double>(ex[v]); });
      row_loss[static_cast<std::size_t>(m)] = std::log(sum) - static_cast<double>(at_tgt);
      pred[static_cast<std::size_t>(m)] = arg;
      if (grad) {
        const auto inv = static_cast<float>(scale / sum);
        for (int v = 0; v < C; ++v) l[v] *= inv;
        l[tgt] -= scale;
      }
    }
  }
  MlmResult res;
  res.predicted = M;
  double loss = 0.0;
  for (int m = 0; m < M; ++m) {
    loss += row_loss[static_cast<std::size_t>(m)];
    res.correct += pred[static_cast<std::size_t>(m)] == labels[static_cast<std::size_t>(m)] ? 1 : 0;
  }
  res.loss = M > 0 ? loss / M : 0.0;
  return res;
}

// The fine-tuning classifiers' helper on the CPU: selection, the selected hidden states gathered
// into one block, cross-entropy over their logits, the gradient scattered back to (B*T, H).
class LabelledRows {
 public:
  int gather(const std::vector<float>& hidden, const std::vector<int>& target, int H) {
    const auto M = static_cast<std::size_t>(sel_.select(target));
    h_.resize(M * static_cast<std::size_t>(H));
    for (std::size_t m = 0; m < M; ++m)
      std::copy_n(hidden.data() + static_cast<std::size_t>(sel_.rows[m]) * H, H, h_.data() + m * H);
    return static_cast<int>(M);
  }
  const std::vector<float>& gathered() const { return h_; }
  const std::vector<int>& rows() const { return sel_.rows; }
  const std::vector<int>& labels() const { return sel_.labels; }
  MlmResult cross_entropy(float* logits, int C, double grad_scale, bool grad, std::vector<int>& pred) {
    return softmax_cross_entropy(logits, sel_.labels, C, grad_scale, grad, pred, row_loss_);
  }
  // dhidden (B*T, H): d (M, H) at the selected rows; the other rows are left as they are.
  void scatter(const std::vector<float>& d, int H, std::vector<float>& dhidden) const {
    for (std::size_t m = 0; m < sel_.rows.size(); ++m)
      std::copy_n(d.data() + m * H, H, dhidden.data() + static_cast<std::size_t>(sel_.rows[m]) * H);
  }

 private:
  LabelledSelection sel_;
  std::vector<float> h_;
  std::vector<double> row_loss_;
};

class CpuBackend {
 public:
  using Act = float;
  template <class E>
  using Buffer = std::vector<E>;
  using Tensor = bert::Tensor;
  using Param = bert::Param;

  explicit CpuBackend(const ModelConfig& c) : precision_(c.precision) {}
  static constexpr const char* name() { return "cpu"; }

  // The products of one part of the model (its shapes are cached inside).
  struct Gemm : pld::cpu::Gemm {
    explicit Gemm(const CpuBackend& b) : pld::cpu::Gemm(b.precision_) {}
  };

  static void init_normal(Tensor& t, std::uint64_t seed, std::uint32_t tensor_id) { bert::init_normal(t.w, seed, tensor_id); }
  static Param param(std::string name, Tensor& t, int layer, bool decay) {
    return {std::move(name), t.w.data(), t.g.data(), t.w.size(), layer, decay};
  }

  // The gated stack of encoder layers, run in place on (B*T, H).
  //
  // With fp32 products the layers are pld::cpu::PreLnLayer<float>. With bf16 products they store
  // bf16 (pld::cpu::SharedPreLnLayer<bf16>, the layer logic the GPU runs): activations, weights and
  // the products' operands in bf16, statistics, scores and gradients in fp32, as the GPU model
  // keeps them. The optimizer and the checkpoints see fp32 master weights (the same initial values
  // as an fp32 run); each layer that runs rounds its bf16 copy from them at every forward. The
  // stack's input is rounded to bf16 once and its output widened back (the model around the
  // encoder stays fp32), and the same for the gradient in the backward.
  class Layers {
   public:
    Layers(const ModelConfig& c, CpuBackend&);
    ~Layers();
    Layers(const Layers&) = delete;
    Layers& operator=(const Layers&) = delete;
    int size() const { return static_cast<int>(bf16_ ? half_.size() : full_.size()); }
    // What runs the products (the first layer's; every layer's has the same precision).
    const pld::cpu::Gemm& gemm() const;
    // Wall time spent inside the layers (forward and backward) since construction.
    double seconds() const { return seconds_; }

    void collect(std::vector<Param>& out);
    void forward(float* x, int B, int T, const std::vector<std::uint8_t>& valid, const pld::LayerPlan& plan, std::uint64_t seed,
                 int row_offset);
    void backward(float* dx, const std::function<void(int)>& layer_done);

   private:
    static pld::LayerStep step(const pld::LayerPlan& plan, int l, std::uint64_t seed, int row_offset);
    void round_params(std::size_t i);

    bool bf16_;
    int hidden_;
    std::vector<std::unique_ptr<pld::cpu::PreLnLayer<float>>> full_;                      // fp32 storage
    std::vector<std::unique_ptr<pld::cpu::SharedPreLnLayer<pld::cpu::bf16>>> half_;      // bf16 storage
    std::vector<pld::cpu::LayerParams<float>> masters_;                                   // ... and its fp32 masters
    std::vector<pld::cpu::AlignedBuffer> work_;  // each layer's saved workspace (bf16)
    std::vector<pld::Workspace> ws_;
    pld::cpu::AlignedBuffer scratch_;
    std::vector<pld::cpu::bf16> act_;  // the stack's activations (forward) and their gradient (backward), bf16
    std::size_t n_ = 0;
    double seconds_ = 0.0;
  };

  // y[n] = tok[ids[n]] + pos[n % T] over N = B*T rows (ids checked by the caller); the ids are
  // kept for embed_backward.
  void embed(const std::vector<int>& ids, const Tensor& tok, const Tensor& pos, float* y, int N, int T, int H) {
    ids_ = ids;
    T_ = T;
    for (int n = 0; n < N; ++n) {
      const float* te = tok.w.data() + static_cast<std::size_t>(ids[static_cast<std::size_t>(n)]) * H;
      const float* pe = pos.w.data() + static_cast<std::size_t>(n % T) * H;
      float* e = y + static_cast<std::size_t>(n) * H;
      for (int h = 0; h < H; ++h) e[h] = te[h] + pe[h];
    }
  }
  // The last embed's gradients: tok.g and pos.g accumulate dy's rows.
  void embed_backward(const float* dy, Tensor& tok, Tensor& pos, int N, int H) {
    for (int n = 0; n < N; ++n) {
      const float* d = dy + static_cast<std::size_t>(n) * H;
      float* gt = tok.g.data() + static_cast<std::size_t>(ids_[static_cast<std::size_t>(n)]) * H;
      float* gp = pos.g.data() + static_cast<std::size_t>(n % T_) * H;
      for (int h = 0; h < H; ++h) {
        gt[h] += d[h];
        gp[h] += d[h];
      }
    }
  }

  void layer_norm_forward(const float* x, const Tensor& w, const Tensor& b, float* y, float* mean, float* rstd, int N, int H, double eps) {
    pld::cpu::layer_norm_forward(x, w.w.data(), b.w.data(), y, mean, rstd, N, H, eps);
  }
  // dx written; w.g and b.g accumulate.
  void layer_norm_backward(const float* dy, const float* x, const float* mean, const float* rstd, Tensor& w, Tensor& b, float* dx, int N, int H) {
    pld::cpu::layer_norm_backward(dy, x, mean, rstd, w.w.data(), dx, w.g.data(), b.g.data(), N, H);
  }
  // The model's own dropout (the embeddings'), keyed like the layers' with layer id 0xFFFF, from
  // element `offset` of the stream (the rows' place in the global batch).
  void dropout(const float* x, float* y, std::size_t n, float rate, std::uint64_t seed, std::int64_t step, std::uint64_t offset) {
    pld::cpu::dropout_apply(x, y, n, static_cast<std::size_t>(offset), rate, pld::cpu::DropoutKey{seed, step, 0xFFFFu, pld::cpu::DropoutSite::attention_out});
  }
  void copy(float* dst, const float* src, std::size_t n) { std::copy_n(src, n, dst); }
  template <class E>
  void zero(E* p, std::size_t n) {
    std::fill_n(p, n, E{});
  }
  void gather_rows(const float* src, const std::vector<int>& rows, int H, float* dst) {
    for (std::size_t m = 0; m < rows.size(); ++m) std::copy_n(src + static_cast<std::size_t>(rows[m]) * H, H, dst + m * H);
  }
  void scatter_rows(const float* src, const std::vector<int>& rows, int H, float* dst) {
    for (std::size_t m = 0; m < rows.size(); ++m) std::copy_n(src + m * H, H, dst + static_cast<std::size_t>(rows[m]) * H);
  }

  // y (M, N) = x (M, K) W^T + b with W (N, K), PyTorch's layout.
  void linear_forward(Gemm& g, const float* x, const Tensor& w, const Tensor& b, float* y, int M, int K, int N) {
    pld::cpu::linear_forward(g, x, w.w.data(), b.w.data(), y, M, K, N);
  }
  // dx written; w.g and b.g accumulate.
  void linear_backward(Gemm& g, const float* dy, const float* x, Tensor& w, Tensor& b, float* dx, int M, int K, int N) {
    pld::cpu::linear_backward(g, dy, x, w.w.data(), dx, w.g.data(), b.g.data(), M, K, N);
  }
  // a = GELU(z) (erf form); z is replaced by what gelu_backward needs (here GELU'(z)).
  void gelu_forward(float* z, float* a, std::size_t n) { pld::cpu::gelu_forward_with_derivative(z, a, z, n, pld::cpu::GeluForm::erf); }
  // dz = da * GELU'(z) from gelu_forward's `saved`; dz may be saved.
  void gelu_backward(const float* da, const float* saved, float* dz, std::size_t n) { pld::cpu::gelu_backward_given(da, saved, dz, n); }

  // Softmax cross-entropy of logits (M, C) against labels; with grad the logits become the
  // gradient, scaled by grad_scale / M.
  MlmResult cross_entropy(float* logits, const std::vector<int>& labels, int C, double grad_scale, bool grad) {
    return softmax_cross_entropy(logits, labels, C, grad_scale, grad, pred_, row_loss_);
  }

 private:
  pld::cpu::Precision precision_;
  std::vector<int> ids_;
  int T_ = 0;
  std::vector<int> pred_;
  std::vector<double> row_loss_;
};

}  // namespace bert
