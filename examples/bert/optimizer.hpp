// Optimizers for the example: AdamW (decoupled weight decay) and LAMB (layer-wise trust ratio, You
// et al. 2020), both without weight decay on biases and LayerNorm; global gradient-norm clipping;
// learning rate with linear warmup then linear or exponential decay. Parameters of a layer the
// gate dropped this step can be left alone entirely (moments untouched) with skip_dropped.
//
// The CPU twin of the GPU's fused optimizer (pld/cuda/optimizer.cuh): the parameters are cut into
// fixed chunks once (kChunk elements, never across tensors), and each pass is one OpenMP loop over
// all chunks, not one per tensor (a BERT has ~200 tensors, most of them small). The element
// arithmetic is fp32 and the GPU kernel's formula; sums (the gradient norm, LAMB's norms) are
// double, each chunk's in vector lanes (pld/cpu/reduce.hpp), the chunks' added in chunk order. The
// chunks do not depend on the thread count, so neither do the bits.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model_config.hpp"
#include "optimizer_config.hpp"
#include "pld/core/error.hpp"
#include "pld/cpu/reduce.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

class Optimizer {
 public:
  static constexpr std::size_t kChunk = 16384;  // elements: 4 arrays of it stay in L2

  Optimizer(const OptimizerConfig& c, const std::vector<Param>& params) : c_(c), sizes_(params.size()), hyper_(params.size()) {
    if (c.kind != OptimizerKind::adamw && c.kind != OptimizerKind::lamb) pld::detail::throw_error("unknown optimizer kind");
    for (std::size_t k = 0; k < params.size(); ++k) {
      const std::size_t n = params[k].size;
      sizes_[k] = n;
      m_.emplace_back(n, 0.0f);
      v_.emplace_back(n, 0.0f);
      steps_.push_back(0);
      hyper_[k].first_chunk = chunks_.size();
      for (std::size_t b = 0; b < n; b += kChunk) chunks_.push_back({k, b, std::min(n, b + kChunk)});
      hyper_[k].chunks = chunks_.size() - hyper_[k].first_chunk;
    }
    partial_.resize(2 * chunks_.size());
  }

  // The global L2 norm of the gradients (before clipping; a pld::Error when it is not finite).
  // Clipping to clip_norm happens in the next update(), which multiplies every gradient by
  // min(1, clip_norm / norm) as it reads it; the gradients themselves are left as they are.
  double clip(const std::vector<Param>& params) {
    check(params);
    const auto nc = static_cast<std::ptrdiff_t>(chunks_.size());
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t k = 0; k < nc; ++k) {
      const Chunk& ch = chunks_[static_cast<std::size_t>(k)];
      const float* g = params[ch.tensor].grad + ch.begin;
      partial_[static_cast<std::size_t>(k)] = pld::cpu::detail::lane_sum<double>(ch.size(), [&](int i) {
        const double x = g[i];
        return x * x;
      });
    }
    double sq = 0.0;
    for (std::ptrdiff_t k = 0; k < nc; ++k) sq += partial_[static_cast<std::size_t>(k)];
    const double norm = std::sqrt(sq);
    if (!std::isfinite(norm)) pld::detail::throw_error("gradient norm is not finite (", norm, "): training diverged");
    factor_ = c_.clip_norm > 0 && norm > c_.clip_norm ? static_cast<float>(c_.clip_norm / norm) : 1.0f;
    return norm;
  }

  // One update at learning rate lr, after clip() (without it the gradients are not clipped).
  // With skip_dropped, tensors of layers the plan dropped are not touched (their moments do not
  // decay either). LAMB leaves its update direction in the gradients.
  void update(std::vector<Param>& params, double lr, const pld::LayerPlan& plan) {
    check(params);
    for (std::size_t k = 0; k < params.size(); ++k) {
      Hyper& h = hyper_[k];
      h.run = !(c_.skip_dropped && params[k].layer >= 0 && !plan.kept(params[k].layer));
      if (!h.run) continue;
      const std::int64_t t = ++steps_[k];
      h.bc1 = static_cast<float>(1.0 - std::pow(c_.beta1, static_cast<double>(t)));
      h.bc2 = static_cast<float>(1.0 - std::pow(c_.beta2, static_cast<double>(t)));
      h.wd = params[k].decay ? static_cast<float>(c_.weight_decay) : 0.0f;
      h.step = static_cast<float>(lr);
    }
    const float factor = factor_;
    factor_ = 1.0f;
    const Moments mo{static_cast<float>(c_.beta1), static_cast<float>(c_.beta2), static_cast<float>(c_.eps), factor};
    if (c_.kind == OptimizerKind::adamw) {
      for_running_chunks(params, [&](std::size_t, const Chunk& ch, const Hyper& h, Param& p) {
        adamw_chunk(ch.size(), p.value + ch.begin, m_[ch.tensor].data() + ch.begin, v_[ch.tensor].data() + ch.begin, p.grad + ch.begin, mo, h);
      });
      return;
    }
    // LAMB: the Adam direction u (with decay) into the gradients and each chunk's sums of w^2 and
    // u^2; per tensor the trust ratio ||w|| / ||u||; then w -= lr * trust * u.
    for_running_chunks(params, [&](std::size_t k, const Chunk& ch, const Hyper& h, Param& p) {
      const float* w = p.value + ch.begin;
      float* g = p.grad + ch.begin;
      const int n = ch.size();
      lamb_direction_chunk(n, w, m_[ch.tensor].data() + ch.begin, v_[ch.tensor].data() + ch.begin, g, mo, h);
      partial_[2 * k] = pld::cpu::detail::lane_sum<double>(n, [&](int i) { return static_cast<double>(w[i]) * w[i]; });
      partial_[2 * k + 1] = pld::cpu::detail::lane_sum<double>(n, [&](int i) { return static_cast<double>(g[i]) * g[i]; });
    });
    for (Hyper& h : hyper_) {
      if (!h.run) continue;
      double ww = 0.0, uu = 0.0;
      for (std::size_t k = h.first_chunk; k < h.first_chunk + h.chunks; ++k) {
        ww += partial_[2 * k];
        uu += partial_[2 * k + 1];
      }
      h.step = static_cast<float>(static_cast<double>(h.step) * (ww > 0 && uu > 0 ? std::sqrt(ww) / std::sqrt(uu) : 1.0));
    }
    for_running_chunks(params, [&](std::size_t, const Chunk& ch, const Hyper& h, Param& p) {
      lamb_apply_chunk(ch.size(), p.value + ch.begin, p.grad + ch.begin, h.step);
    });
  }

  const OptimizerConfig& config() const { return c_; }
  std::vector<std::vector<float>>& first_moments() { return m_; }
  std::vector<std::vector<float>>& second_moments() { return v_; }
  std::vector<std::int64_t>& steps() { return steps_; }

 private:
  struct Chunk {
    std::size_t tensor, begin, end;
    int size() const { return static_cast<int>(end - begin); }  // <= kChunk
  };
  struct Hyper {  // per tensor, this step
    std::size_t first_chunk = 0, chunks = 0;
    bool run = false;
    float bc1 = 1, bc2 = 1, wd = 0, step = 0;  // bias corrections, decay, lr (LAMB: times the trust ratio)
  };
  struct Moments {  // per step
    float beta1, beta2, eps, factor;  // factor: clip()'s, on every gradient
  };

  // Adam's moments for one element from its gradient, and its direction
  // u = m^ / (sqrt(v^) + eps) + wd w: the GPU kernel's formula (pld/cuda/optimizer.cuh).
  static float adam_direction(float g, float& m, float& v, float w, const Moments& c, const Hyper& h) {
    g *= c.factor;
    m = c.beta1 * m + (1.0f - c.beta1) * g;
    v = c.beta2 * v + (1.0f - c.beta2) * g * g;
    return (m / h.bc1) / (std::sqrt(v / h.bc2) + c.eps) + h.wd * w;
  }
  // The chunk loops take everything by value or through restrict pointers, so that they vectorize
  // (reading the constants through `this`, which a store might alias, keeps them scalar). They
  // also need -fno-math-errno (examples/bert/CMakeLists.txt): with errno to set, GCC keeps
  // std::sqrt scalar.
  static void adamw_chunk(int n, float* __restrict__ w, float* __restrict__ m, float* __restrict__ v, const float* __restrict__ g,
                          Moments c, Hyper h) {
    for (int i = 0; i < n; ++i) w[i] -= h.step * adam_direction(g[i], m[i], v[i], w[i], c, h);
  }
  // f(k, chunk k, its tensor's Hyper, its tensor) for every chunk of a tensor that runs this
  // step, in one OpenMP loop.
  template <class F>
  void for_running_chunks(std::vector<Param>& params, F&& f) {
    const auto nc = static_cast<std::ptrdiff_t>(chunks_.size());
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t k = 0; k < nc; ++k) {
      const Chunk& ch = chunks_[static_cast<std::size_t>(k)];
      const Hyper h = hyper_[ch.tensor];
      if (h.run) f(static_cast<std::size_t>(k), ch, h, params[ch.tensor]);
    }
  }
  // LAMB's first pass: u written over the gradients.
  static void lamb_direction_chunk(int n, const float* __restrict__ w, float* __restrict__ m, float* __restrict__ v,
                                   float* __restrict__ g, Moments c, Hyper h) {
    for (int i = 0; i < n; ++i) g[i] = adam_direction(g[i], m[i], v[i], w[i], c, h);
  }
  // LAMB's last pass: w -= lr * trust * u.
  static void lamb_apply_chunk(int n, float* __restrict__ w, const float* __restrict__ u, float step) {
    for (int i = 0; i < n; ++i) w[i] -= step * u[i];
  }

  // The parameters (and restored moments) must be those the optimizer was made for.
  void check(const std::vector<Param>& params) const {
    if (params.size() != sizes_.size() || m_.size() != sizes_.size() || v_.size() != sizes_.size() || steps_.size() != sizes_.size())
      pld::detail::throw_error("optimizer: ", params.size(), " parameter tensors, made for ", sizes_.size());
    for (std::size_t k = 0; k < sizes_.size(); ++k)
      if (params[k].size != sizes_[k] || m_[k].size() != sizes_[k] || v_[k].size() != sizes_[k])
        pld::detail::throw_error("optimizer: tensor ", params[k].name, " has ", params[k].size, " elements (moments ", m_[k].size(),
                                 ", ", v_[k].size(), "), made for ", sizes_[k]);
  }

  OptimizerConfig c_;
  std::vector<std::size_t> sizes_;
  std::vector<std::vector<float>> m_, v_;
  std::vector<std::int64_t> steps_;  // per tensor: tensors skipped while dropped count fewer steps
  std::vector<Chunk> chunks_;
  std::vector<Hyper> hyper_;
  std::vector<double> partial_;  // per chunk: clip's sum of g^2; LAMB's sums of w^2 and u^2
  float factor_ = 1.0f;          // clip()'s factor for the next update()
};

}  // namespace bert
