// Depth schedules: how the keep probability of layer l = 1..L follows from theta. Every form is
// p_l = 1 - w_l (1 - theta) with a drop weight w_l in [0, 1]:
//   uniform  w_l = 1      -> p_l = theta                  (TD only, random)
//   linear   w_l = l / L  -> p_l = 1 - (l / L)(1 - theta) (PLD, Zhang & He 2020, eq. 7)
//   profile  w_l given    -> any explicit per-layer shape
// In code layers are 0-based: index i holds layer l = i + 1, and the same p is used to sample the
// gate and to scale the kept branch.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pld/core/config.hpp"
#include "pld/core/error.hpp"

namespace pld {

enum class DepthKind : std::uint8_t { uniform, linear, profile };

inline const char* to_string(DepthKind kind) {
  switch (kind) {
    case DepthKind::uniform: return "uniform";
    case DepthKind::linear: return "linear";
    case DepthKind::profile: return "profile";
  }
  return "?";
}

inline DepthKind parse_depth_kind(std::string_view name) {
  if (name == "uniform") return DepthKind::uniform;
  if (name == "linear") return DepthKind::linear;
  if (name == "profile") return DepthKind::profile;
  detail::throw_error("unknown depth schedule '", std::string(name),
                      "' (expected uniform, linear or profile)");
}

class DepthSchedule {
 public:
  // The profile lives inside the value so the type stays trivially copyable to a device.
  static constexpr int kMaxProfileLayers = 256;

  DepthSchedule() = default;  // uniform

  static DepthSchedule uniform() { return DepthSchedule(DepthKind::uniform); }
  static DepthSchedule linear() { return DepthSchedule(DepthKind::linear); }

  // weights[i] is the drop weight of layer i + 1, each in [0, 1].
  static DepthSchedule profile(const std::vector<double>& weights) {
    if (weights.empty()) detail::throw_error("depth profile must have at least one layer");
    if (weights.size() > static_cast<std::size_t>(kMaxProfileLayers))
      detail::throw_error("depth profile has ", weights.size(), " layers; at most ",
                          kMaxProfileLayers, " are supported");
    DepthSchedule d(DepthKind::profile);
    d.profile_layers_ = static_cast<int>(weights.size());
    for (std::size_t i = 0; i < weights.size(); ++i) {
      const double w = weights[i];
      if (!(w >= 0.0 && w <= 1.0))
        detail::throw_error("depth profile weight of layer ", i + 1, " must be in [0, 1], got ", w);
      d.weights_[i] = w;
    }
    return d;
  }

  // Drop weight w of 0-based layer `layer` in a stack of `num_layers`.
  PLD_HOST_DEVICE double weight(int layer, int num_layers) const {
    switch (kind_) {
      case DepthKind::uniform: return 1.0;
      case DepthKind::linear: return static_cast<double>(layer + 1) / static_cast<double>(num_layers);
      case DepthKind::profile: return weights_[layer];
    }
    return 1.0;
  }

  // p_l = 1 - w_l (1 - theta).
  PLD_HOST_DEVICE double keep_prob(double theta, int layer, int num_layers) const {
    return 1.0 - weight(layer, num_layers) * (1.0 - theta);
  }

  // Mean drop weight over the stack: the expected kept fraction is 1 - mean_weight (1 - theta).
  double mean_weight(int num_layers) const {
    switch (kind_) {
      case DepthKind::uniform: return 1.0;
      case DepthKind::linear:
        return static_cast<double>(num_layers + 1) / (2.0 * static_cast<double>(num_layers));
      case DepthKind::profile: {
        double s = 0.0;
        for (int i = 0; i < profile_layers_; ++i) s += weights_[i];
        return s / static_cast<double>(profile_layers_);
      }
    }
    return 1.0;
  }

  PLD_HOST_DEVICE DepthKind kind() const { return kind_; }
  // Number of layers a profile was given for; 0 for uniform and linear (any depth).
  PLD_HOST_DEVICE int profile_layers() const { return profile_layers_; }
  std::vector<double> profile_weights() const {
    return std::vector<double>(weights_, weights_ + profile_layers_);
  }

  friend bool operator==(const DepthSchedule& a, const DepthSchedule& b) {
    if (a.kind_ != b.kind_ || a.profile_layers_ != b.profile_layers_) return false;
    for (int i = 0; i < a.profile_layers_; ++i)
      if (a.weights_[i] != b.weights_[i]) return false;
    return true;
  }
  friend bool operator!=(const DepthSchedule& a, const DepthSchedule& b) { return !(a == b); }

 private:
  explicit DepthSchedule(DepthKind kind) : kind_(kind) {}

  DepthKind kind_ = DepthKind::uniform;
  int profile_layers_ = 0;
  double weights_[kMaxProfileLayers] = {};
};

}  // namespace pld
