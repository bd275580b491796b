// pld-bert's GPU backend: what model_logic.hpp's BERT runs on when it runs on pld::cuda. Storage
// T (bf16, fp16, or float for tests) with fp32 arithmetic, fp32 parameter gradients; the encoder
// is a pld::cuda::BasicLayerStack (Pre-LN, or Post-LN with --norm post); the products are
// cuBLASLt plans made once per shape; the rest is pld's CUDA kernels. LB is the layer backend
// (pld/layer/basic_pre_ln_layer.hpp, with upload/download/zero): pld::cuda::DeviceBackend<T> on a GPU, or
// the tests' SIMT emulator (the same kernels on host memory, with emulated products), which is
// how CI runs this file. The layer's kernels are called through LB; the embedding and loss
// kernels, which the layer does not use, directly.
//
// Every step is queued on the backend's stream. What the host made for the batch (token ids, the
// embedding gradient's grouping, the masked rows and labels, the padding mask) goes through LB's
// staging memory (page-locked on a GPU) and is copied on the stream without waiting. What the host
// must see waits for it: the loss (cross_entropy reads back M floats and ints).
//
// Not here: the optimizer over these tensors (the fp32 masters live in it; see
// pld::cuda::StackAdamW for the encoder stack's), checkpoints, pld-bert's --device cuda.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "model_config.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/cuda/basic_layer_stack.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/embedding.cuh"
#include "pld/cuda/mlm_loss.cuh"
#include "pld/cuda/storage.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

// n elements of host data into dst (LB memory, resized to n) without a synchronisation: written
// into `staging` (page-locked on a GPU, whose reserve() first waits until its previous copy has
// read it) and copied on the stream. The emulator refuses a copy from any other memory.
template <class LB, class Buf, class E>
void stage_copy(Buf& dst, const E* src, std::size_t n, typename LB::RowStaging& staging, cudaStream_t stream) {
  dst.resize(n);
  if (n == 0) return;
  const std::size_t bytes = n * sizeof(E);
  int* s = staging.reserve((bytes + sizeof(int) - 1) / sizeof(int));
  std::memcpy(s, src, bytes);
  LB::copy_from_host(dst.data(), s, bytes, stream);
  staging.copied(stream);
}

template <class T, class LB>
class CudaBackend {
 public:
  using Act = T;

  // A typed array in LB's memory (device memory on a GPU). Grows only: resize() to a smaller
  // size keeps the allocation (the head's row count changes every batch); contents are not kept
  // when it grows.
  template <class E>
  class Buffer {
   public:
    void resize(std::size_t n) {
      if (n * sizeof(E) > mem_.bytes()) mem_.resize(n * sizeof(E));
      size_ = n;
    }
    E* data() { return static_cast<E*>(mem_.data()); }
    const E* data() const { return static_cast<const E*>(mem_.data()); }
    std::size_t size() const { return size_; }

   private:
    typename LB::Buffer mem_;
    std::size_t size_ = 0;
  };

  // A tensor of the model's own (embeddings, LayerNorms, head): storage value, fp32 gradient.
  struct Tensor {
    Buffer<T> w;
    Buffer<float> g;
    explicit Tensor(std::size_t n = 0, float v = 0.0f) {
      w.resize(n);
      g.resize(n);
      upload_values(*this, std::vector<float>(n, v));
      LB::zero(g.data(), n * sizeof(float), nullptr);
    }
  };

  // The optimizer's and checkpoint's entry: device pointers (value in storage T).
  struct Param {
    std::string name;
    T* value;
    float* grad;
    std::size_t size;
    int layer;
    bool decay;
  };

  explicit CudaBackend(const ModelConfig&, cudaStream_t stream = nullptr) : stream_(stream) {}
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;
  static constexpr const char* name() { return "cuda"; }
  cudaStream_t stream() const { return stream_; }
  // Kernels and products this backend queued (the layers count their own).
  const pld::cuda::LaunchCounts& launches() const { return counts_; }

  // The products of one part of the model: plans made once per (kind, rows, in, out).
  class Gemm {
   public:
    explicit Gemm(CudaBackend& b) : be_(b) {}
    enum Kind { forward, dgrad, wgrad };
    using Plan = typename LB::template Plan<T>;
    Plan& plan(Kind kind, int rows, int in, int out) {
      const auto key = std::make_tuple(static_cast<int>(kind), rows, in, out);
      auto it = plans_.find(key);
      if (it != plans_.end()) return *it->second;
      const pld::MatMul p = kind == forward ? pld::with_epilogue(pld::linear_product(rows, in, out), pld::Epilogue::bias)
                            : kind == dgrad ? pld::linear_dgrad_product(rows, in, out)
                                            : pld::linear_wgrad_product(rows, in, out);
      auto made = std::make_unique<Plan>(be_.lt_, p);
      return *plans_.emplace(key, std::move(made)).first->second;
    }

   private:
    CudaBackend& be_;
    std::map<std::tuple<int, int, int, int>, std::unique_ptr<Plan>> plans_;
  };

  // Initial values as the CPU model draws them (model_config.hpp's tensor ids), in storage T.
  static void init_normal(Tensor& t, std::uint64_t seed, std::uint32_t tensor_id) {
    std::vector<float> v(t.w.size());
    pld::cpu::fill_normal(v, seed, 1, tensor_id, 0.02);
    upload_values(t, v);
  }
  static Param param(std::string name, Tensor& t, int layer, bool decay) {
    return {std::move(name), t.w.data(), t.g.data(), t.w.size(), layer, decay};
  }
  // fp32 values converted to storage T in t.w (synchronous).
  static void upload_values(Tensor& t, const std::vector<float>& v) {
    std::vector<T> s(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) s[i] = pld::cuda::from_float<T>(v[i]);
    LB::upload(t.w.data(), s.data(), s.size() * sizeof(T), nullptr);
  }

  // The gated stack of CUDA layers, in place on (B*T, H); initial values as the CPU layers'.
  class Layers {
   public:
    Layers(const ModelConfig& c, CudaBackend& be) : be_(be), stack_(c.layer_config(), c.layers) {
      for (int l = 0; l < c.layers; ++l) {
        pld::cpu::LayerParams<float> host(c.layer_config());
        host.init_normal(c.seed + 7919u * static_cast<std::uint64_t>(l + 1));
        stack_.layer(l).params().upload(host, be.stream_);
        stack_.layer(l).grads().zero(be.stream_);
      }
    }
    int size() const { return stack_.num_layers(); }
    auto& layer(int l) { return stack_.layer(l); }
    pld::cuda::BasicLayerStack<T, LB>& stack() { return stack_; }
    // Time the stream spent in the layers (forward and backward) since construction, from LB's
    // events around each pass (CUDA events on a GPU). Reading it waits for the passes recorded so
    // far; pld-bert reads it once a step, after the step's results were read back anyway.
    double seconds() const {
      for (std::size_t i = 0; i < used_; ++i) {
        timers_[i]->stop.synchronize();
        seconds_ += static_cast<double>(timers_[i]->stop.elapsed_ms_since(timers_[i]->start)) * 1e-3;
      }
      used_ = 0;
      return seconds_;
    }

    void collect(std::vector<Param>& out) {
      for (int l = 0; l < size(); ++l) {
        auto ps = stack_.layer(l).params().tensors();
        auto gs = stack_.layer(l).grads().tensors();
        for (std::size_t t = 0; t < ps.size(); ++t) {
          out.push_back({"encoder.layer." + std::to_string(l) + "." + ps[t].name, static_cast<T*>(ps[t].data),
                         static_cast<float*>(gs[t].data), ps[t].size, l, layer_tensor_decays(ps[t].name)});
        }
      }
    }
    void forward(T* x, int B, int T_, const std::vector<std::uint8_t>& valid, const pld::LayerPlan& plan, std::uint64_t seed,
                 int row_offset) {
      be_.stage(valid_, valid.data(), valid.size(), valid_staging_);
      Timer& t = timer();
      t.start.record(be_.stream_);
      stack_.forward(x, B, T_, valid_.data(), plan, seed, be_.stream_, row_offset);
      t.stop.record(be_.stream_);
    }
    void backward(T* dx, const std::function<void(int)>& layer_done) {
      Timer& t = timer();
      t.start.record(be_.stream_);
      stack_.backward(dx, be_.stream_, layer_done);
      t.stop.record(be_.stream_);
    }

   private:
    struct Timer {
      typename LB::Event start, stop;
    };
    // The next unread pair of events (made once, reused after seconds() read them).
    Timer& timer() {
      if (used_ == timers_.size()) timers_.push_back(std::make_unique<Timer>());
      return *timers_[used_++];
    }

    CudaBackend& be_;
    pld::cuda::BasicLayerStack<T, LB> stack_;
    Buffer<std::uint8_t> valid_;
    typename LB::RowStaging valid_staging_;
    mutable std::vector<std::unique_ptr<Timer>> timers_;
    mutable std::size_t used_ = 0;  // timers recorded and not yet read
    mutable double seconds_ = 0.0;
  };

  // y[n] = tok[ids[n]] + pos[n % T]; the ids (checked by the caller) are uploaded, and grouped by
  // id on the host for the deterministic embed_backward.
  void embed(const std::vector<int>& ids, const Tensor& tok, const Tensor& pos, T* y, int N, int T_, int H) {
    T_seq_ = T_;
    stage(ids_, ids.data(), ids.size(), ids_staging_);
    grad_plan_ = pld::cuda::EmbeddingGradPlan::build(ids.data(), N, static_cast<int>(tok.w.size() / static_cast<std::size_t>(H)));
    pld::cuda::embedding_forward<T>(ids_.data(), tok.w.data(), pos.w.data(), y, N / T_, T_, H, stream_, counts_);
  }
  void embed_backward(const T* dy, Tensor& tok, Tensor& pos, int N, int H) {
    const auto& p = grad_plan_;
    stage(plan_ids_, p.ids_unique.data(), p.ids_unique.size(), plan_staging_[0]);
    stage(plan_offsets_, p.offsets.data(), p.offsets.size(), plan_staging_[1]);
    stage(plan_rows_, p.rows.data(), p.rows.size(), plan_staging_[2]);
    pld::cuda::embedding_backward<T>(dy, plan_ids_.data(), plan_offsets_.data(), plan_rows_.data(), p.groups(), N / T_seq_, T_seq_, H,
                                     tok.g.data(), pos.g.data(), stream_, counts_);
  }

  void layer_norm_forward(const T* x, const Tensor& w, const Tensor& b, T* y, float* mean, float* rstd, int N, int H, double eps) {
    LB::layer_norm_forward(x, w.w.data(), b.w.data(), y, mean, rstd, N, H, eps, stream_, counts_);
  }
  void layer_norm_backward(const T* dy, const T* x, const float* mean, const float* rstd, Tensor& w, Tensor& b, T* dx, int N, int H) {
    colsum_.resize(static_cast<std::size_t>(pld::cuda::layer_norm_sums_scratch(N, H)));
    LB::layer_norm_backward(dy, x, mean, rstd, w.w.data(), nullptr, dx, w.g.data(), b.g.data(), N, H, colsum_.data(), stream_,
                                      counts_);
  }
  // The embeddings' dropout: the CPU model's key (layer id 0xFFFF, the attention-output site),
  // from element `offset` of the stream (the rows' place in the global batch).
  void dropout(const T* x, T* y, std::size_t n, float rate, std::uint64_t seed, std::int64_t step, std::uint64_t offset) {
    pld::cuda::DropoutMask m;
    m.seed = seed;
    m.step = static_cast<std::uint64_t>(step);
    m.site = static_cast<std::uint32_t>(pld::DropoutSite::attention_out);
    m.layer = 0xFFFFu;
    m.rate = rate;
    m.scale = rate > 0.0f ? 1.0f / (1.0f - rate) : 1.0f;
    m.offset = offset;
    LB::residual_dropout(nullptr, x, y, static_cast<std::int64_t>(n), 1.0f, m, stream_, counts_);
  }
  void copy(T* dst, const T* src, std::size_t n) { LB::copy(dst, src, n * sizeof(T), stream_); }
  template <class E>
  void zero(E* p, std::size_t n) {
    LB::zero(p, n * sizeof(E), stream_);
  }
  void gather_rows(const T* src, const std::vector<int>& rows, int H, T* dst) {
    stage(rows_, rows.data(), rows.size(), rows_staging_);
    LB::gather_rows(src, rows_.data(), static_cast<int>(rows.size()), H, dst, stream_, counts_);
  }
  // Uses the rows of the last gather_rows (the head scatters back where it gathered).
  void scatter_rows(const T* src, const std::vector<int>& rows, int H, T* dst) {
    LB::scatter_rows(src, rows_.data(), static_cast<int>(rows.size()), H, dst, stream_, counts_);
  }

  // y (M, N) = x (M, K) W^T + b with W (N, K).
  void linear_forward(Gemm& g, const T* x, const Tensor& w, const Tensor& b, T* y, int M, int K, int N) {
    g.plan(Gemm::forward, M, K, N).run(lt_, 1.0f, x, w.w.data(), 0.0f, y, b.w.data(), nullptr, lt_ws(), stream_);
    counts_.gemms += 1;
  }
  // dx written; w.g and b.g (fp32) accumulate.
  void linear_backward(Gemm& g, const T* dy, const T* x, Tensor& w, Tensor& b, T* dx, int M, int K, int N) {
    colsum_.resize(static_cast<std::size_t>(pld::cuda::column_sums_scratch(M, N)));
    LB::column_sums(dy, M, N, b.g.data(), colsum_.data(), stream_, counts_);
    g.plan(Gemm::wgrad, M, K, N).run(lt_, 1.0f, dy, x, 1.0f, w.g.data(), nullptr, nullptr, lt_ws(), stream_);
    g.plan(Gemm::dgrad, M, K, N).run(lt_, 1.0f, dy, w.w.data(), 0.0f, dx, nullptr, nullptr, lt_ws(), stream_);
    counts_.gemms += 2;
  }
  // a = GELU(z) (erf form); z is kept as it is: the GPU backward recomputes from it.
  void gelu_forward(T* z, T* a, std::size_t n) {
    LB::gelu_forward(z, a, static_cast<std::int64_t>(n), pld::GeluForm::erf, stream_, counts_);
  }
  void gelu_backward(const T* da, const T* saved, T* dz, std::size_t n) {
    LB::gelu_backward(da, saved, dz, static_cast<std::int64_t>(n), pld::GeluForm::erf, stream_, counts_);
  }

  // Softmax cross-entropy of logits (M, C) against labels: the kernel writes the gradient
  // (scaled by grad_scale / M) over the logits either way; the loss and hits come back to the
  // host (a synchronisation) and are summed there in row order.
  MlmResult cross_entropy(T* logits, const std::vector<int>& labels, int C, double grad_scale, bool /*grad*/) {
    const int M = static_cast<int>(labels.size());
    stage(labels_, labels.data(), labels.size(), labels_staging_);
    loss_.resize(labels.size());
    correct_.resize(labels.size());
    pld::cuda::softmax_cross_entropy<T>(logits, labels_.data(), M, C, static_cast<float>(grad_scale / M), loss_.data(), correct_.data(),
                                        stream_, counts_);
    std::vector<float> loss(labels.size());
    std::vector<int> correct(labels.size());
    LB::download(loss.data(), loss_.data(), loss.size() * sizeof(float), stream_);
    LB::download(correct.data(), correct_.data(), correct.size() * sizeof(int), stream_);
    MlmResult r;
    r.predicted = M;
    double sum = 0.0;
    for (int m = 0; m < M; ++m) {
      sum += loss[static_cast<std::size_t>(m)];
      r.correct += correct[static_cast<std::size_t>(m)];
    }
    r.loss = M > 0 ? sum / M : 0.0;
    return r;
  }

 private:
  // What the host made for the batch (ids, rows, labels, the padding mask) to the device without a
  // synchronisation; each site has its own staging (its previous copy is a step old: no wait).
  template <class E>
  void stage(Buffer<E>& dst, const E* src, std::size_t n, typename LB::RowStaging& staging) {
    stage_copy<LB>(dst, src, n, staging, stream_);
  }
  void* lt_ws() {
    if (lt_ws_.size() == 0) lt_ws_.resize(pld::cuda::kLtWorkspaceBytes);
    return lt_ws_.data();
  }

  cudaStream_t stream_;
  typename LB::Handle lt_;
  pld::cuda::LaunchCounts counts_;
  int T_seq_ = 0;
  Buffer<int> ids_, plan_ids_, plan_offsets_, plan_rows_, rows_, labels_, correct_;
  typename LB::RowStaging ids_staging_, plan_staging_[3], rows_staging_, labels_staging_;
  Buffer<float> colsum_, loss_;
  Buffer<unsigned char> lt_ws_;
  pld::cuda::EmbeddingGradPlan grad_plan_;
};

}  // namespace bert
