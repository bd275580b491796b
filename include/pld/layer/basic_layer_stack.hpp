// A gated stack of Pre-LN layers (basic_pre_ln_layer.hpp) run from a LayerPlan, with its
// workspace in one arena: what a model (BERT's encoder, say) puts between its embeddings and
// its output LayerNorm.
//
//   forward(x, ...)   x (B, T, H) in place through the layers the plan keeps (a dropped layer is
//                     the identity: no launch, no workspace);
//   backward(dx, ...) the gradient in place, in reverse order; layer_done(l) runs right after
//                     layer l's backward (its gradients are final: a data-parallel run starts
//                     their all-reduce there).
//
// The arena: each kept layer's `saved` region lives from its forward to its backward, so the
// step needs the sum of the kept layers' saved bytes; the scratch is needed only while a layer
// runs, so one (the largest) serves all. reserve(batch, seq) sizes the arena for the step that
// keeps every layer; no later step of that shape or smaller allocates. A step that needs more
// (a larger batch, say) grows the arena before its first launch, never between a forward and its
// backward. allocations() counts the arena's allocations, so tests can prove it.
//
// Plain C++ over the layer's Backend (basic_pre_ln_layer.hpp), which adds `Buffer` (the backend's
// memory: resize(bytes), data(), bytes()): pld::cuda::LayerStack<T> on a device
// (pld/cuda/layer_stack.cuh); the host emulations in the tests.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/layer/basic_pre_ln_layer.hpp"
#include "pld/layer/launch_counts.hpp"
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"
#include "pld/layer/workspace.hpp"

namespace pld {

template <class T, class Backend>
class BasicLayerStack {
 public:
  using Layer = BasicPreLnLayer<T, Backend>;
  using Stream = typename Backend::Stream;

  // handle_args construct every layer's Handle (the CPU's Gemm takes a pld::cpu::Precision).
  template <class... HandleArgs>
  BasicLayerStack(const LayerConfig& config, int layers, const HandleArgs&... handle_args) {
    config.validate();
    if (layers < 1 || layers > 1000) pld::detail::throw_error("LayerStack: layers must be in 1..1000, got ", layers);
    for (int l = 0; l < layers; ++l) layers_.push_back(std::make_unique<Layer>(config, handle_args...));
  }

  int num_layers() const { return static_cast<int>(layers_.size()); }
  Layer& layer(int l) { return *layers_.at(static_cast<std::size_t>(l)); }
  const Layer& layer(int l) const { return *layers_.at(static_cast<std::size_t>(l)); }

  // Sizes the arena for a step of (batch, seq) that keeps every layer.
  void reserve(int batch, int seq) {
    Layer::can_implement(config(), batch, seq);
    LayerStep all;
    const WorkspaceSizes one = Layer::workspace_sizes(config(), batch, seq, all);
    grow(static_cast<std::size_t>(num_layers()) * round_up(one.saved) + round_up(one.scratch));
  }
  std::size_t arena_bytes() const { return arena_.bytes(); }
  std::uint64_t allocations() const { return allocations_; }
  // Bytes the last forward's kept layers hold until their backward (the scratch not counted).
  std::size_t saved_bytes() const { return saved_total_; }

  // Every layer's launches since construction, summed.
  LaunchCounts launches() const {
    LaunchCounts c;
    for (const auto& l : layers_) {
      c.kernels += l->launches().kernels;
      c.gemms += l->launches().gemms;
      c.copies += l->launches().copies;
    }
    return c;
  }

  // x holds the whole batch (the default), or (data parallel) a shard of it: first_row >= 0.
  static constexpr std::int64_t kWholeBatch = -1;

  // x (B, T, H) in place. valid: (B, T) device bytes, 1 = real token; null = no padding. The plan
  // must have one decision per layer; `seed` keys dropout. first_row: kWholeBatch (a per-sample
  // plan then has exactly `batch` rows), or, in a data-parallel step, where x's rows start in the
  // global batch (LayerStep::first_row: the plan is the global batch's, dropout keyed by global rows).
  void forward(T* x, int batch, int seq, const std::uint8_t* valid, const LayerPlan& plan, std::uint64_t seed, Stream stream,
               std::int64_t first_row = kWholeBatch) {
    const int L = num_layers();
    if (plan.num_layers() != L) pld::detail::throw_error("LayerStack: the plan has ", plan.num_layers(), " layers, the stack ", L);
    const bool shard = first_row != kWholeBatch;  // a negative row is LayerStep::from_plan's error
    if (plan.per_sample() && (shard ? first_row + batch > plan.batch : plan.batch != batch))
      pld::detail::throw_error("LayerStack: the per-sample plan is for ", plan.batch, " rows, the batch has ", batch,
                               shard ? " from row " + std::to_string(first_row) : std::string());
    if (!shard) first_row = 0;
    Layer::can_implement(config(), batch, seq);
    // Every size first, then the arena, then the launches: nothing runs if the arena cannot grow.
    offsets_.assign(static_cast<std::size_t>(L), kNone);
    sizes_.assign(static_cast<std::size_t>(L), 0);
    std::size_t saved = 0, scratch = 0;
    for (int l = 0; l < L; ++l) {
      const WorkspaceSizes s = Layer::workspace_sizes(config(), batch, seq, LayerStep::from_plan(plan, l, seed, first_row));
      if (s.saved == 0) continue;  // dropped (or no row kept): no memory at all
      offsets_[static_cast<std::size_t>(l)] = saved;
      sizes_[static_cast<std::size_t>(l)] = s.saved;
      saved += round_up(s.saved);
      scratch = std::max(scratch, round_up(s.scratch));
    }
    grow(saved + scratch);
    saved_total_ = saved;
    scratch_at_ = saved;
    scratch_bytes_ = scratch;
    for (int l = 0; l < L; ++l) layers_[static_cast<std::size_t>(l)]->forward(x, x, batch, seq, valid, LayerStep::from_plan(plan, l, seed, first_row), ws(l), stream);
    forwarded_ = true;
  }

  // dx: the gradient of the last forward's output, in place to the gradient of its input.
  // Parameter gradients accumulate (+=) in each kept layer's grads().
  void backward(T* dx, Stream stream, const std::function<void(int)>& layer_done = nullptr) {
    if (!forwarded_) pld::detail::throw_error("LayerStack::backward() without a forward()");
    for (int l = num_layers() - 1; l >= 0; --l) {
      layers_[static_cast<std::size_t>(l)]->backward(dx, dx, ws(l), stream);
      if (layer_done) layer_done(l);
    }
    forwarded_ = false;
  }

 private:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);
  static std::size_t round_up(std::size_t b) { return (b + kWorkspaceAlign - 1) / kWorkspaceAlign * kWorkspaceAlign; }
  const LayerConfig& config() const { return layers_.front()->config(); }

  void grow(std::size_t bytes) {
    if (bytes <= arena_.bytes()) return;
    arena_.resize(bytes);
    ++allocations_;
  }

  // Layer l's workspace in the arena; a dropped layer gets none (its forward asks for none).
  Workspace ws(int l) const {
    const std::size_t off = offsets_[static_cast<std::size_t>(l)];
    if (off == kNone) return Workspace{};
    char* base = static_cast<char*>(arena_.data());
    return Workspace{base + off, sizes_[static_cast<std::size_t>(l)], base + scratch_at_, scratch_bytes_};
  }

  std::vector<std::unique_ptr<Layer>> layers_;
  typename Backend::Buffer arena_;
  std::uint64_t allocations_ = 0;
  std::vector<std::size_t> offsets_, sizes_;  // per layer: where its saved region starts, its bytes
  std::size_t saved_total_ = 0, scratch_at_ = 0, scratch_bytes_ = 0;
  bool forwarded_ = false;
};

}  // namespace pld
