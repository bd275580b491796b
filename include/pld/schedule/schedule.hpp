// Schedule: a temporal schedule composed with a depth schedule for a stack of L layers, giving
// p_l(t) = 1 - w_l (1 - theta(t)) for every layer at any step, and the expected compute it implies.
#pragma once

#include <cstdint>

#include "pld/core/config.hpp"
#include "pld/core/error.hpp"
#include "pld/schedule/depth.hpp"
#include "pld/schedule/temporal.hpp"

namespace pld {

class Schedule {
 public:
  // Layers are addressed with 16 bits in the RNG counter (see core/random.hpp).
  static constexpr int kMaxLayers = 65535;

  Schedule(TemporalSchedule temporal, DepthSchedule depth, int num_layers)
      : temporal_(temporal), depth_(depth), num_layers_(num_layers) {
    if (num_layers < 1 || num_layers > kMaxLayers)
      detail::throw_error("num_layers must be in [1, ", kMaxLayers, "], got ", num_layers);
    if (depth.kind() == DepthKind::profile && depth.profile_layers() != num_layers)
      detail::throw_error("depth profile has ", depth.profile_layers(),
                          " weights but the stack has num_layers = ", num_layers);
    mean_weight_ = depth.mean_weight(num_layers);
  }

  PLD_HOST_DEVICE int num_layers() const { return num_layers_; }
  PLD_HOST_DEVICE double theta(std::int64_t step) const { return temporal_.theta(step); }

  // Keep probability of 0-based layer `layer` (layer l = layer + 1) at `step`.
  PLD_HOST_DEVICE double keep_prob(std::int64_t step, int layer) const {
    return depth_.keep_prob(temporal_.theta(step), layer, num_layers_);
  }

  // All L keep probabilities at `step` into out[0..L).
  PLD_HOST_DEVICE void keep_probs(std::int64_t step, double* out) const {
    const double theta = temporal_.theta(step);
    for (int i = 0; i < num_layers_; ++i) out[i] = depth_.keep_prob(theta, i, num_layers_);
  }

  // Expected fraction of the layer stack's work done at `step`: mean_l p_l(t).
  PLD_HOST_DEVICE double expected_kept_fraction(std::int64_t step) const {
    return 1.0 - mean_weight_ * (1.0 - temporal_.theta(step));
  }

  // Mean expected kept fraction over steps [begin, end).
  double mean_kept_fraction(std::int64_t begin, std::int64_t end) const {
    if (end <= begin) detail::throw_error("step range [", begin, ", ", end, ") is empty");
    const double n = static_cast<double>(end - begin);
    return 1.0 - mean_weight_ * (1.0 - temporal_.sum_theta(begin, end) / n);
  }

  // True when every layer is kept at every step.
  bool never_drops() const { return temporal_.never_drops() || mean_weight_ == 0.0; }

  const TemporalSchedule& temporal() const { return temporal_; }
  const DepthSchedule& depth() const { return depth_; }
  double mean_weight() const { return mean_weight_; }

  friend bool operator==(const Schedule& a, const Schedule& b) {
    return a.num_layers_ == b.num_layers_ && a.temporal_ == b.temporal_ && a.depth_ == b.depth_;
  }
  friend bool operator!=(const Schedule& a, const Schedule& b) { return !(a == b); }

 private:
  TemporalSchedule temporal_;
  DepthSchedule depth_;
  int num_layers_;
  double mean_weight_;
};

}  // namespace pld
