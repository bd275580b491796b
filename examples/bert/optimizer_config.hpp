// What pld-bert's optimizers are configured with, apart from the CPU optimizer itself
// (optimizer.hpp) so that the GPU's (cuda_optimizer.cuh) shares it without the CPU code.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "pld/core/error.hpp"

namespace bert {

enum class OptimizerKind { adamw, lamb };
enum class LrDecay { linear, exponential };

inline OptimizerKind parse_optimizer(const std::string& s) {
  if (s == "adamw") return OptimizerKind::adamw;
  if (s == "lamb") return OptimizerKind::lamb;
  pld::detail::throw_error("unknown optimizer '", s, "' (expected adamw or lamb)");
}
inline LrDecay parse_lr_decay(const std::string& s) {
  if (s == "linear") return LrDecay::linear;
  if (s == "exp") return LrDecay::exponential;
  pld::detail::throw_error("unknown lr decay '", s, "' (expected linear or exp)");
}

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::adamw;
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6;
  double weight_decay = 0.01;
  double clip_norm = 1.0;  // <= 0: no clipping
  std::int64_t warmup = 100;
  LrDecay decay = LrDecay::linear;
  double final_lr_ratio = 0.01;  // exponential decay ends at lr * this; linear ends at 0
  bool skip_dropped = false;
};

// Learning rate at step t (0-based) of `total` steps.
inline double learning_rate(const OptimizerConfig& c, std::int64_t t, std::int64_t total) {
  if (c.warmup > 0 && t < c.warmup) return c.lr * static_cast<double>(t + 1) / static_cast<double>(c.warmup);
  const double span = static_cast<double>(std::max<std::int64_t>(1, total - c.warmup));
  const double f = std::min(1.0, static_cast<double>(t - c.warmup) / span);
  return c.decay == LrDecay::linear ? c.lr * (1.0 - f) : c.lr * std::pow(c.final_lr_ratio, f);
}

}  // namespace bert
