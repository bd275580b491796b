// Named schedules: the rows of the PLD ablation (Zhang & He 2020, Table 1) built from one
// description, ScheduleSpec, which programs and config files fill in from text.
//   none     keep every layer (plain Pre-LN)
//   pld      exponential temporal decay x linear depth decay (full PLD)
//   random   one fixed keep ratio for every layer and step; defaults to PLD's steady-state mean
//   td_only  exponential temporal decay, uniform over depth
//   dd_only  linear depth decay at the fixed theta = theta_bar
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/schedule/depth.hpp"
#include "pld/schedule/schedule.hpp"
#include "pld/schedule/temporal.hpp"

namespace pld {

enum class Preset : std::uint8_t { none, pld, random, td_only, dd_only };

inline const char* to_string(Preset p) {
  switch (p) {
    case Preset::none: return "none";
    case Preset::pld: return "pld";
    case Preset::random: return "random";
    case Preset::td_only: return "td_only";
    case Preset::dd_only: return "dd_only";
  }
  return "?";
}

inline Preset parse_preset(std::string_view name) {
  if (name == "none") return Preset::none;
  if (name == "pld") return Preset::pld;
  if (name == "random") return Preset::random;
  if (name == "td_only") return Preset::td_only;
  if (name == "dd_only") return Preset::dd_only;
  detail::throw_error("unknown preset '", std::string(name),
                      "' (expected none, pld, random, td_only or dd_only)");
}

// Mean keep probability of a PLD stack at theta = theta_bar: 1 - (1 - theta_bar)(L + 1) / (2L).
inline double pld_steady_state_keep(int num_layers, double theta_bar) {
  return 1.0 - (1.0 - theta_bar) * static_cast<double>(num_layers + 1) /
                   (2.0 * static_cast<double>(num_layers));
}

struct ScheduleSpec {
  Preset preset = Preset::pld;
  int num_layers = 12;
  double theta_bar = 0.5;             // floor of theta (pld, td_only) or the fixed theta (dd_only)
  double gamma = 0.001;               // exponential decay rate (pld, td_only)
  std::optional<double> keep_ratio;   // random: default pld_steady_state_keep(L, theta_bar)
  std::int64_t delay = 0;             // steps before any dropping (all presets but none)
  // Optional replacements of a preset's parts:
  std::optional<TemporalKind> decay;  // pld, td_only: linear or cosine instead of exponential
  std::int64_t decay_steps = 0;       // length of a linear or cosine decay
  std::vector<double> profile;        // pld, dd_only: explicit depth weights instead of l / L
};

inline Schedule make_schedule(const ScheduleSpec& s) {
  const bool temporal_decay = s.preset == Preset::pld || s.preset == Preset::td_only;
  const bool depth_decay = s.preset == Preset::pld || s.preset == Preset::dd_only;
  if (s.decay && !temporal_decay)
    detail::throw_error("a decay form applies only to presets pld and td_only, not ",
                        to_string(s.preset));
  if (!s.profile.empty() && !depth_decay)
    detail::throw_error("a depth profile applies only to presets pld and dd_only, not ",
                        to_string(s.preset));
  if (s.keep_ratio && s.preset != Preset::random)
    detail::throw_error("keep_ratio applies only to preset random, not ", to_string(s.preset));

  TemporalSchedule temporal;
  if (temporal_decay) {
    switch (s.decay.value_or(TemporalKind::exponential)) {
      case TemporalKind::exponential:
        temporal = TemporalSchedule::exponential(s.theta_bar, s.gamma, s.delay);
        break;
      case TemporalKind::linear:
        temporal = TemporalSchedule::linear(s.theta_bar, s.decay_steps, s.delay);
        break;
      case TemporalKind::cosine:
        temporal = TemporalSchedule::cosine(s.theta_bar, s.decay_steps, s.delay);
        break;
      case TemporalKind::constant:
        temporal = TemporalSchedule::constant(s.theta_bar, s.delay);
        break;
    }
  } else if (s.preset == Preset::dd_only) {
    temporal = TemporalSchedule::constant(s.theta_bar, s.delay);
  } else if (s.preset == Preset::random) {
    if (s.num_layers < 1) detail::throw_error("num_layers must be >= 1, got ", s.num_layers);
    double ratio = 0.0;
    if (s.keep_ratio) {
      ratio = *s.keep_ratio;
    } else {
      TemporalSchedule::constant(s.theta_bar);  // validates theta_bar before it is used
      ratio = pld_steady_state_keep(s.num_layers, s.theta_bar);
    }
    if (!(ratio > 0.0 && ratio <= 1.0)) detail::throw_error("keep_ratio must be in (0, 1], got ", ratio);
    temporal = TemporalSchedule::constant(ratio, s.delay);
  }  // none: the default TemporalSchedule keeps everything

  DepthSchedule depth = DepthSchedule::uniform();
  if (depth_decay) depth = s.profile.empty() ? DepthSchedule::linear() : DepthSchedule::profile(s.profile);
  return Schedule(temporal, depth, s.num_layers);
}

}  // namespace pld
