// Running a LibTorch layer stack through a LayerPlan: dropped layers are not called (no work, no
// autograd node, no gradient), kept layers get their gate scale, and in per-sample mode only the
// rows that run through a layer are gathered (index_select), computed and written back
// (index_copy), so dropped rows cost nothing and their gradient passes straight through.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"

namespace pld::libtorch {

namespace detail {
using pld::detail::throw_error;
// Layers in a container: a torch::nn::ModuleList or an indexable container of module holders.
inline std::int64_t stack_size(const torch::nn::ModuleList& c) { return static_cast<std::int64_t>(c->size()); }
template <class C>
std::int64_t stack_size(const C& c) {
  return static_cast<std::int64_t>(c.size());
}
}  // namespace detail

// What one layer call covers: the layer, its gate scale g_l (1/p_l with inverse-prob scaling),
// and, in per-sample mode when not every row runs, the batch rows (int64 indices along dim 0).
struct LayerCall {
  int layer = 0;
  double scale = 1.0;
  at::Tensor rows;  // undefined: every row of the batch

  bool all_rows() const { return !rows.defined(); }
  // `t` restricted to this call's rows along dim 0 (t itself when every row runs): what a layer
  // does with its per-row inputs, e.g. the padding mask.
  at::Tensor select(const at::Tensor& t) const {
    if (all_rows() || !t.defined()) return t;
    return t.index_select(0, rows.to(t.device()));
  }
};

// Runs every kept layer of `plan` on `x`: fn(h, call) returns the layer's output for input h
// (same shape as h). Per-layer mode: fn sees the whole batch. Per-sample mode (plan.batch > 0):
// x's dim 0 must be the plan's batch; fn sees only the kept rows of each layer. Layers are called
// in order 0..L-1; the stack's output is returned (x itself is not modified in place).
template <class Fn>
at::Tensor forward_layers(const LayerPlan& plan, at::Tensor x, Fn&& fn) {
  if (!x.defined()) detail::throw_error("forward_layers: the input tensor is undefined");
  if (plan.per_sample() && (x.dim() == 0 || x.size(0) != plan.batch))
    detail::throw_error("forward_layers: per-sample plan for a batch of ", plan.batch, " rows, but the input has ",
                        x.dim() == 0 ? std::int64_t{0} : x.size(0), " rows along dim 0");
  for (int i = 0; i < plan.num_layers(); ++i) {
    if (!plan.kept(i)) continue;  // dropped: the identity, nothing runs
    LayerCall call;
    call.layer = i;
    call.scale = plan.gate_scale(i);
    at::Tensor in = x;
    if (plan.per_sample()) {
      const std::vector<int> kept = plan.kept_rows(i);
      if (static_cast<int>(kept.size()) < plan.batch) {
        std::vector<std::int64_t> idx(kept.begin(), kept.end());
        call.rows = torch::tensor(idx, torch::TensorOptions().dtype(torch::kInt64)).to(x.device());
        in = x.index_select(0, call.rows);
      }
    }
    at::Tensor out = fn(in, static_cast<const LayerCall&>(call));
    if (!out.defined() || out.sizes() != in.sizes())
      detail::throw_error("forward_layers: layer ", i, " returned a tensor of another shape than its input");
    x = call.all_rows() ? out : x.index_copy(0, call.rows, out);
  }
  return x;
}

// The stack form for modules whose forward takes the gate scale:
//   layers[i]->forward(h, mask_rows, scale)   (mask: e.g. a key padding mask, may be undefined)
// `layers` is any indexable container of module holders (std::vector<PreLnEncoderLayer>, ...)
// with exactly plan.num_layers() entries.
template <class Layers>
at::Tensor forward_stack(const LayerPlan& plan, Layers& layers, at::Tensor x, const at::Tensor& mask = {}) {
  if (detail::stack_size(layers) != plan.num_layers())
    detail::throw_error("forward_stack: the plan has ", plan.num_layers(), " layers, the stack ", detail::stack_size(layers));
  return forward_layers(plan, std::move(x), [&](const at::Tensor& h, const LayerCall& c) {
    return layers[static_cast<std::size_t>(c.layer)]->forward(h, c.select(mask), c.scale);
  });
}

// The parameters of the layers `plan` dropped this step (per-sample: layers no row ran through).
// `layers`: an indexable container of modules (ModuleList, std::vector of holders), one per layer.
template <class Layers>
std::vector<at::Tensor> dropped_parameters(const LayerPlan& plan, Layers& layers) {
  if (detail::stack_size(layers) != plan.num_layers())
    detail::throw_error("dropped_parameters: the plan has ", plan.num_layers(), " layers, the stack ", detail::stack_size(layers));
  std::vector<at::Tensor> out;
  for (int i = 0; i < plan.num_layers(); ++i)
    if (!plan.kept(i))
      for (auto& p : layers[static_cast<std::size_t>(i)]->parameters()) out.push_back(p);
  return out;
}

// Leaves the dropped layers out of this optimizer step: their gradients become undefined, and
// LibTorch's optimizers skip a parameter without a gradient (tests/torch checks AdamW and SGD
// with momentum), so neither the weights nor the moments or step counts of those layers change (no
// weight decay either). Call between backward() and optimizer.step(). Without it a dropped layer
// holds zero gradients after zero_grad(), and Adam-type optimizers still move its weights
// (moments decaying, weight decay). Returns how many parameters were released.
template <class Layers>
std::size_t release_dropped_grads(const LayerPlan& plan, Layers& layers) {
  std::size_t n = 0;
  for (auto& p : dropped_parameters(plan, layers)) {
    if (p.grad().defined()) {
      p.mutable_grad() = at::Tensor();
      ++n;
    }
  }
  return n;
}

}  // namespace pld::libtorch
