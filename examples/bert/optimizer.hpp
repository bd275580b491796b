// Optimizers for the example: AdamW (decoupled weight decay) and LAMB (layer-wise trust ratio, You
// et al. 2020), both without weight decay on biases and LayerNorm; global gradient-norm clipping;
// learning rate with linear warmup then linear or exponential decay. Parameters of a layer the
// gate dropped this step can be left alone entirely (moments untouched) with skip_dropped.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "model_config.hpp"
#include "optimizer_config.hpp"
#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"

namespace bert {

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& c, const std::vector<Param>& params) : c_(c) {
    for (const auto& p : params) {
      m_.emplace_back(p.size, 0.0f);
      v_.emplace_back(p.size, 0.0f);
      steps_.push_back(0);
    }
  }

  // Global L2 norm of the gradients; scales them to clip_norm when above it. Returns the norm
  // before clipping.
  double clip(std::vector<Param>& params) const {
    double sq = 0.0;
    for (const auto& p : params)
      for (std::size_t i = 0; i < p.size; ++i) sq += static_cast<double>(p.grad[i]) * p.grad[i];
    const double norm = std::sqrt(sq);
    if (!std::isfinite(norm)) pld::detail::throw_error("gradient norm is not finite (", norm, "): training diverged");
    if (c_.clip_norm > 0 && norm > c_.clip_norm) {
      const auto s = static_cast<float>(c_.clip_norm / norm);
      for (auto& p : params)
        for (std::size_t i = 0; i < p.size; ++i) p.grad[i] *= s;
    }
    return norm;
  }

  // One update at learning rate lr. With skip_dropped, tensors of layers the plan dropped are
  // not touched (their moments do not decay either).
  void update(std::vector<Param>& params, double lr, const pld::LayerPlan& plan) {
    for (std::size_t k = 0; k < params.size(); ++k) {
      Param& p = params[k];
      if (c_.skip_dropped && p.layer >= 0 && !plan.kept(p.layer)) continue;
      const std::int64_t t = ++steps_[k];
      const double bc1 = 1.0 - std::pow(c_.beta1, static_cast<double>(t)), bc2 = 1.0 - std::pow(c_.beta2, static_cast<double>(t));
      const double wd = p.decay ? c_.weight_decay : 0.0;
      float* m = m_[k].data();
      float* v = v_[k].data();
      const auto b1 = static_cast<float>(c_.beta1), b2 = static_cast<float>(c_.beta2);
      const auto n = static_cast<std::ptrdiff_t>(p.size);
      if (c_.kind == OptimizerKind::adamw) {
        // Element-wise, so threads change nothing in the result.
#pragma omp parallel for schedule(static) if (n > 65536)
        for (std::ptrdiff_t i = 0; i < n; ++i) {
          const float g = p.grad[i];
          m[i] = b1 * m[i] + (1.0f - b1) * g;
          v[i] = b2 * v[i] + (1.0f - b2) * g * g;
          const double u = (m[i] / bc1) / (std::sqrt(v[i] / bc2) + c_.eps) + wd * p.value[i];
          p.value[i] -= static_cast<float>(lr * u);
        }
      } else {  // LAMB: the Adam direction plus decay, rescaled per tensor by ||w|| / ||u||
        upd_.resize(p.size);
#pragma omp parallel for schedule(static) if (n > 65536)
        for (std::ptrdiff_t i = 0; i < n; ++i) {
          const float g = p.grad[i];
          m[i] = b1 * m[i] + (1.0f - b1) * g;
          v[i] = b2 * v[i] + (1.0f - b2) * g * g;
          upd_[static_cast<std::size_t>(i)] = static_cast<float>((m[i] / bc1) / (std::sqrt(v[i] / bc2) + c_.eps) + wd * p.value[i]);
        }
        double wn = 0.0, un = 0.0;  // the norms in element order: the same bits with any thread count
        for (std::size_t i = 0; i < p.size; ++i) {
          wn += static_cast<double>(p.value[i]) * p.value[i];
          un += static_cast<double>(upd_[i]) * upd_[i];
        }
        wn = std::sqrt(wn);
        un = std::sqrt(un);
        const double trust = (wn > 0 && un > 0) ? wn / un : 1.0;
#pragma omp parallel for schedule(static) if (n > 65536)
        for (std::ptrdiff_t i = 0; i < n; ++i) p.value[i] -= static_cast<float>(lr * trust * upd_[static_cast<std::size_t>(i)]);
      }
    }
  }

  const OptimizerConfig& config() const { return c_; }
  std::vector<std::vector<float>>& first_moments() { return m_; }
  std::vector<std::vector<float>>& second_moments() { return v_; }
  std::vector<std::int64_t>& steps() { return steps_; }

 private:
  OptimizerConfig c_;
  std::vector<std::vector<float>> m_, v_;
  std::vector<std::int64_t> steps_;  // per tensor: tensors skipped while dropped count fewer steps
  std::vector<float> upd_;
};

}  // namespace bert
