// pld::cuda::StackAdamW<T>: fused AdamW (optimizer.cuh) over every parameter of a LayerStack, with
// fp32 master weights and moments, and PLD's choice of leaving the layers a step dropped alone.
//
//   StackAdamW<bf16> opt(stack, hyper, weight_decay);
//   opt.upload(l, host_params[l], stream);    // fp32 master weights, and the layer's bf16 copy
//   ... stack.forward(x, ..., plan, ...); loss; stack.backward(dx, ...);
//   opt.step(plan, /*skip_dropped=*/true, stream);
//
// step(): the gradient norm over every layer's gradients (clipping; a dropped layer's are zero),
// then one AdamW pass over the tensors that run: with skip_dropped, the layers the plan dropped
// keep their weights, moments and step counts (pld-bert's --skip-dropped-updates: no kernel reads
// them); without it every tensor is updated (a zero gradient still moves a weight through its
// momentum and decay). Each tensor has its own step count for the bias corrections. The updated
// layers' gradients are zeroed for the next step. Weight decay applies to the weight matrices, not
// to biases or LayerNorm parameters. No host synchronisation: the per-step tensor table (step
// counts) is copied from page-locked memory, the chunks of the kept layers are gathered on the
// device from a table made once.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "pld/core/error.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/layer_params.hpp"
#include "pld/cuda/layer_stack.cuh"
#include "pld/cuda/memory.hpp"
#include "pld/cuda/optimizer.cuh"
#include "pld/gate/layer_plan.hpp"

namespace pld::cuda {

template <class T>
class StackAdamW {
 public:
  StackAdamW(LayerStack<T>& stack, const OptimizerHyper& hyper, float weight_decay) : stack_(stack), hyper_(hyper) {
    const LayerConfig& c = stack.layer(0).config();
    const int L = stack.num_layers();
    for (int l = 0; l < L; ++l) {
      master_.emplace_back(c);
      m_.emplace_back(c);
      v_.emplace_back(c);
    }
    for (int l = 0; l < L; ++l) {
      auto names = stack.layer(l).params().tensors();
      const int first = static_cast<int>(tensors_.size());
      for (int i = 0; i < kNumParams; ++i) {
        const auto id = static_cast<ParamId>(i);
        OptimizerTensor t;
        t.master = master_[static_cast<std::size_t>(l)].get(id);
        t.grad = stack.layer(l).grads().get(id);
        t.m = m_[static_cast<std::size_t>(l)].get(id);
        t.v = v_[static_cast<std::size_t>(l)].get(id);
        t.model = stack.layer(l).params().get(id);
        t.n = static_cast<std::int64_t>(stack.layer(l).params().size(id));
        const std::string& name = names[static_cast<std::size_t>(i)].name;
        t.weight_decay = name.find("bias") == std::string::npos && name.find("norm") == std::string::npos ? weight_decay : 0.0f;
        tensors_.push_back(t);
      }
      layer_tensors_.push_back({first, static_cast<int>(tensors_.size())});
    }
    steps_.assign(tensors_.size(), 0);
    const std::vector<OptimizerChunk> chunks = make_optimizer_chunks(tensors_);
    all_chunks_ = to_device(chunks);
    update_chunks_ = DeviceArray<OptimizerChunk>(chunks.size());
    for (const auto& r : layer_tensors_) {
      const OptimizerTensor& a = tensors_[static_cast<std::size_t>(r.first)];
      const OptimizerTensor& b = tensors_[static_cast<std::size_t>(r.second - 1)];
      layer_chunks_.push_back({a.first_chunk, b.first_chunk + b.chunks});
    }
    d_tensors_ = DeviceArray<OptimizerTensor>(tensors_.size());
    scratch_ = DeviceArray<float>(static_cast<std::size_t>(optimizer_scratch(static_cast<int>(chunks.size()), static_cast<int>(tensors_.size()))));
    stats_ = to_device(std::vector<float>(kOptimizerStats, 0.0f));
  }

  // Layer l's fp32 master weights from the host, and the layer's storage copy made from them.
  template <class S>
  void upload(int l, cpu::LayerParams<S>& host, cudaStream_t stream) {
    master_.at(static_cast<std::size_t>(l)).upload(host, stream);
    stack_.layer(l).params().upload(host, stream);
  }
  // Layer l's fp32 master weights to the host (waits for the stream).
  template <class S>
  void download(int l, cpu::LayerParams<S>& host, cudaStream_t stream) const {
    master_.at(static_cast<std::size_t>(l)).download(host, stream);
  }
  const DeviceLayerParams<float>& first_moments(int l) const { return m_.at(static_cast<std::size_t>(l)); }
  const DeviceLayerParams<float>& second_moments(int l) const { return v_.at(static_cast<std::size_t>(l)); }

  // Per tensor (layer-major, twelve per layer in ParamId order): AdamW steps taken.
  const std::vector<std::int64_t>& steps() const { return steps_; }
  const LaunchCounts& launches() const { return counts_; }
  // [0] the last step's gradient norm, [1] 1 if it was not finite, [2] such steps so far (waits).
  std::vector<float> stats(cudaStream_t stream) const { return to_host(stats_.data(), kOptimizerStats, stream); }

  void step(const LayerPlan& plan, bool skip_dropped, cudaStream_t stream) {
    const int L = stack_.num_layers();
    if (plan.num_layers() != L) pld::detail::throw_error("cuda::StackAdamW: the plan has ", plan.num_layers(), " layers, the stack ", L);
    // The tensors that run this step, their step counts and bias corrections.
    std::vector<char> run(static_cast<std::size_t>(L));
    for (int l = 0; l < L; ++l) run[static_cast<std::size_t>(l)] = !skip_dropped || plan.kept(l);
    for (int l = 0; l < L; ++l) {
      if (!run[static_cast<std::size_t>(l)]) continue;
      for (int t = layer_tensors_[static_cast<std::size_t>(l)].first; t < layer_tensors_[static_cast<std::size_t>(l)].second; ++t) {
        const double k = static_cast<double>(++steps_[static_cast<std::size_t>(t)]);
        tensors_[static_cast<std::size_t>(t)].bc1 = static_cast<float>(1.0 - std::pow(static_cast<double>(hyper_.beta1), k));
        tensors_[static_cast<std::size_t>(t)].bc2 = static_cast<float>(1.0 - std::pow(static_cast<double>(hyper_.beta2), k));
      }
    }
    OptimizerTensor* staged = staging_.reserve(tensors_.size());
    std::copy(tensors_.begin(), tensors_.end(), staged);
    check(cudaMemcpyAsync(d_tensors_.data(), staged, tensors_.size() * sizeof(OptimizerTensor), cudaMemcpyHostToDevice, stream),
          "cudaMemcpyAsync (optimizer tensors)");
    staging_.copied(stream);
    counts_.copies += 1;
    // The update's chunk table: the running layers' ranges of the full table, runs of adjacent
    // layers copied at once (device to device).
    int nc = 0;
    for (int l = 0; l < L;) {
      if (!run[static_cast<std::size_t>(l)]) {
        ++l;
        continue;
      }
      int e = l;
      while (e < L && run[static_cast<std::size_t>(e)]) ++e;
      const int begin = layer_chunks_[static_cast<std::size_t>(l)].first, end = layer_chunks_[static_cast<std::size_t>(e - 1)].second;
      check(cudaMemcpyAsync(update_chunks_.data() + nc, all_chunks_.data() + begin, static_cast<std::size_t>(end - begin) * sizeof(OptimizerChunk),
                            cudaMemcpyDeviceToDevice, stream),
            "cudaMemcpyAsync (optimizer chunks)");
      counts_.copies += 1;
      nc += end - begin;
      l = e;
    }
    optimizer_grad_norm(d_tensors_.data(), all_chunks_.data(), static_cast<int>(all_chunks_.size()), hyper_, scratch_.data(), stats_.data(),
                        stream, counts_);
    adamw_update<T>(d_tensors_.data(), update_chunks_.data(), nc, hyper_, stats_.data(), stream, counts_);
    for (int l = 0; l < L; ++l)
      if (run[static_cast<std::size_t>(l)]) stack_.layer(l).grads().zero(stream);
  }

 private:
  LayerStack<T>& stack_;
  OptimizerHyper hyper_;
  std::vector<DeviceLayerParams<float>> master_, m_, v_;
  std::vector<OptimizerTensor> tensors_;
  std::vector<std::pair<int, int>> layer_tensors_, layer_chunks_;  // per layer: [first, end) tensors, chunks
  std::vector<std::int64_t> steps_;
  DeviceArray<OptimizerChunk> all_chunks_, update_chunks_;
  DeviceArray<OptimizerTensor> d_tensors_;
  DeviceArray<float> scratch_, stats_;
  PinnedStaging<OptimizerTensor> staging_;
  LaunchCounts counts_;
};

}  // namespace pld::cuda
