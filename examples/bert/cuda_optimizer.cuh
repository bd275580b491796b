// pld-bert's optimizer for the GPU model (cuda_backend.cuh): AdamW or LAMB over every tensor of
// the model (embeddings, encoder layers, head) with fp32 master weights and moments, in the fused
// multi-tensor kernels of pld/cuda/optimizer.cuh, with the semantics of the CPU's bert::Optimizer
// (optimizer.hpp): global-norm clipping over every gradient, per-tensor step counts,
// --skip-dropped-updates leaving a dropped layer's tensors, moments and step counts alone,
// decoupled weight decay off for biases and LayerNorm. After the update each tensor's storage
// copy (what the model multiplies with) is written from its master in the same pass, and the
// gradients are zeroed for the next step.
//
// The masters start as the storage values (exact for fp32 storage); set_values() gives them the
// fp32 numbers a run starts from (the CPU model's initial values, a checkpoint's), and writes the
// storage copy from them. capture() / restore() move the whole state through pld-bert's
// checkpoint (checkpoint.hpp), the CPU's format and tensor names.
//
// Per step the host makes the table of the tensors that run (their step counts and bias
// corrections) and its chunk table, and copies them through staging memory (page-locked on a GPU)
// without waiting. What the host reads back: the gradient norm (norm()), once a step.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "checkpoint.hpp"
#include "cuda_backend.cuh"
#include "optimizer_config.hpp"
#include "pld/cuda/optimizer.cuh"
#include "pld/gate/layer_plan.hpp"

namespace bert {

template <class T, class LB>
class CudaOptimizer {
 public:
  using Backend = CudaBackend<T, LB>;
  using Param = typename Backend::Param;
  template <class E>
  using Buffer = typename Backend::template Buffer<E>;

  CudaOptimizer(const OptimizerConfig& c, const std::vector<Param>& params, cudaStream_t stream = nullptr)
      : c_(c), params_(params), stream_(stream), master_(params.size()), m_(params.size()), v_(params.size()) {
    if (c.kind != OptimizerKind::adamw && c.kind != OptimizerKind::lamb) pld::detail::throw_error("unknown optimizer kind");
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::size_t n = params[k].size;
      master_[k].resize(n);
      m_[k].resize(n);
      v_[k].resize(n);
      LB::zero(m_[k].data(), n * sizeof(float), stream_);
      LB::zero(v_[k].data(), n * sizeof(float), stream_);
      std::vector<T> s(n);
      LB::download(s.data(), params[k].value, n * sizeof(T), stream_);
      std::vector<float> f(n);
      for (std::size_t i = 0; i < n; ++i) f[i] = pld::cuda::to_float(s[i]);
      LB::upload(master_[k].data(), f.data(), n * sizeof(float), stream_);
    }
    steps_.assign(params.size(), 0);
    // The norm's table covers every tensor, every step (as the CPU's clip does).
    std::vector<pld::cuda::OptimizerTensor> all;
    for (std::size_t k = 0; k < params.size(); ++k) all.push_back(tensor(k));
    const auto chunks = pld::cuda::make_optimizer_chunks(all);
    upload(all_, all);
    upload(all_chunks_, chunks);
    all_chunk_count_ = static_cast<int>(chunks.size());
    // The norm's and any update's scratch: a step's tensors and chunks are a subset of these.
    scratch_.resize(static_cast<std::size_t>(pld::cuda::optimizer_scratch(all_chunk_count_, static_cast<int>(params.size()))));
    stats_.resize(pld::cuda::kOptimizerStats);
    LB::zero(stats_.data(), pld::cuda::kOptimizerStats * sizeof(float), stream_);
  }

  // Tensor k's fp32 master weights (and its storage copy, rounded from them).
  void set_values(std::size_t k, const std::vector<float>& v) {
    const Param& p = params_.at(k);
    if (v.size() != p.size) pld::detail::throw_error("CudaOptimizer: ", p.name, " has ", p.size, " elements, got ", v.size());
    LB::upload(master_[k].data(), v.data(), v.size() * sizeof(float), stream_);
    std::vector<T> s(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) s[i] = pld::cuda::from_float<T>(v[i]);
    LB::upload(p.value, s.data(), s.size() * sizeof(T), stream_);
  }
  std::vector<float> values(std::size_t k) const { return download(master_.at(k)); }
  std::vector<float> first_moments(std::size_t k) const { return download(m_.at(k)); }
  std::vector<float> second_moments(std::size_t k) const { return download(v_.at(k)); }
  const std::vector<std::int64_t>& steps() const { return steps_; }

  // The model's tensors (fp32 masters) and this optimizer's state into a checkpoint, in the CPU's
  // format and names: a GPU run's checkpoint resumes on the CPU and back.
  void capture(Checkpoint& c) const {
    c.names.clear();
    c.values.clear();
    c.m.clear();
    c.v.clear();
    for (std::size_t k = 0; k < params_.size(); ++k) {
      c.names.push_back(params_[k].name);
      c.values.push_back(values(k));
      c.m.push_back(first_moments(k));
      c.v.push_back(second_moments(k));
    }
    c.opt_steps = steps_;
  }
  // A checkpoint's tensors (by name and size, checked first: nothing changes on an error) into the
  // masters, the model's storage copies and the optimizer's state.
  void restore(const Checkpoint& c, const std::string& what) {
    std::vector<std::string> names;
    std::vector<std::size_t> sizes;
    for (const Param& p : params_) {
      names.push_back(p.name);
      sizes.push_back(p.size);
    }
    check_checkpoint_tensors(c, names, sizes, what);
    for (std::size_t k = 0; k < params_.size(); ++k) {
      set_values(k, c.values[k]);
      LB::upload(m_[k].data(), c.m[k].data(), c.m[k].size() * sizeof(float), stream_);
      LB::upload(v_[k].data(), c.v[k].data(), c.v[k].size() * sizeof(float), stream_);
    }
    steps_ = c.opt_steps;
  }
  const pld::cuda::LaunchCounts& launches() const { return counts_; }

  // One update at learning rate lr after the step's backward; `inv_loss_scale` undoes fp16 loss
  // scaling. Returns the gradient norm before clipping (read back: a synchronisation) and whether
  // it was finite (not finite: the kernels changed nothing, as an fp16 overflow step must).
  // The same as norm() then apply(), for loops that need no look at the norm in between.
  struct Result {
    double norm = 0.0;
    bool finite = true;
  };
  Result step(double lr, const pld::LayerPlan& plan, float inv_loss_scale = 1.0f) {
    const Result r = norm(inv_loss_scale);
    apply(lr, plan);
    return r;
  }

  // The global gradient norm over every tensor (of the unscaled gradients), read back; the
  // clipping factor and the overflow flag stay on the device for apply().
  Result norm(float inv_loss_scale = 1.0f) {
    h_ = pld::cuda::OptimizerHyper{};
    h_.beta1 = static_cast<float>(c_.beta1);
    h_.beta2 = static_cast<float>(c_.beta2);
    h_.eps = static_cast<float>(c_.eps);
    h_.clip_norm = static_cast<float>(c_.clip_norm);
    h_.inv_loss_scale = inv_loss_scale;
    pld::cuda::optimizer_grad_norm(all_.data(), all_chunks_.data(), all_chunk_count_, h_, scratch_.data(), stats_.data(), stream_, counts_);
    float stats[pld::cuda::kOptimizerStats];
    LB::download(stats, stats_.data(), sizeof(stats), stream_);
    last_ = Result{static_cast<double>(stats[0]), stats[1] == 0.0f};
    have_norm_ = true;
    return last_;
  }

  // What the last norm() returned.
  const Result& last_norm() const { return last_; }

  // The update at lr after norm() (an overflow step changes nothing and counts no step), then
  // the gradients zeroed for the next step.
  void apply(double lr, const pld::LayerPlan& plan) {
    if (!have_norm_) pld::detail::throw_error("CudaOptimizer::apply without norm() first");
    have_norm_ = false;
    std::vector<pld::cuda::OptimizerTensor> run;
    std::vector<std::size_t> ran;
    for (std::size_t k = 0; k < params_.size(); ++k) {
      const Param& p = params_[k];
      if (c_.skip_dropped && p.layer >= 0 && !plan.kept(p.layer)) continue;
      pld::cuda::OptimizerTensor t = tensor(k);
      const double s = static_cast<double>(steps_[k] + 1);
      t.bc1 = static_cast<float>(1.0 - std::pow(c_.beta1, s));
      t.bc2 = static_cast<float>(1.0 - std::pow(c_.beta2, s));
      run.push_back(t);
      ran.push_back(k);
    }
    const auto chunks = pld::cuda::make_optimizer_chunks(run);
    stage(run_, run, run_staging_);
    stage(run_chunks_, chunks, chunks_staging_);
    const int nc = static_cast<int>(chunks.size()), nt = static_cast<int>(run.size());
    h_.lr = static_cast<float>(lr);
    if (c_.kind == OptimizerKind::adamw)
      pld::cuda::adamw_update<T>(run_.data(), run_chunks_.data(), nc, h_, stats_.data(), stream_, counts_);
    else
      pld::cuda::lamb_update<T>(run_.data(), nt, run_chunks_.data(), nc, h_, scratch_.data(), stats_.data(), stream_, counts_);
    if (last_.finite)
      for (std::size_t k : ran) ++steps_[k];  // an overflow step is not a step
    for (const Param& p : params_) LB::zero(p.grad, p.size * sizeof(float), stream_);
  }

 private:
  pld::cuda::OptimizerTensor tensor(std::size_t k) {
    const Param& p = params_[k];
    pld::cuda::OptimizerTensor t;
    t.master = master_[k].data();
    t.grad = p.grad;
    t.m = m_[k].data();
    t.v = v_[k].data();
    t.model = p.value;
    t.n = static_cast<std::int64_t>(p.size);
    t.weight_decay = p.decay ? static_cast<float>(c_.weight_decay) : 0.0f;
    return t;
  }
  template <class E>
  void upload(Buffer<E>& dst, const std::vector<E>& v) {
    dst.resize(v.size());
    if (!v.empty()) LB::upload(dst.data(), v.data(), v.size() * sizeof(E), stream_);
  }
  // The step's tables to the device without a synchronisation (stage_copy, cuda_backend.cuh).
  template <class E>
  void stage(Buffer<E>& dst, const std::vector<E>& v, typename LB::RowStaging& staging) {
    stage_copy<LB>(dst, v.data(), v.size(), staging, stream_);
  }
  std::vector<float> download(const Buffer<float>& b) const {
    std::vector<float> v(b.size());
    LB::download(v.data(), b.data(), v.size() * sizeof(float), stream_);
    return v;
  }

  OptimizerConfig c_;
  std::vector<Param> params_;
  cudaStream_t stream_;
  std::vector<Buffer<float>> master_, m_, v_;
  std::vector<std::int64_t> steps_;
  Buffer<pld::cuda::OptimizerTensor> all_, run_;
  Buffer<pld::cuda::OptimizerChunk> all_chunks_, run_chunks_;
  typename LB::RowStaging run_staging_, chunks_staging_;
  int all_chunk_count_ = 0;
  Buffer<float> scratch_, stats_;
  pld::cuda::OptimizerHyper h_;  // of the last norm(), for its apply()
  Result last_;
  bool have_norm_ = false;
  pld::cuda::LaunchCounts counts_;
};

}  // namespace bert
