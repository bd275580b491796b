// Compute accounting: how much of the layer stack's work a schedule does over a run, the ideal
// speedup that implies, and a planner that finds theta_bar (or the random keep ratio) for a target.
// "Ideal" assumes a kept layer costs its full time, a dropped one nothing, and the rest of the step
// (embeddings, head, optimizer) the fraction `overhead` of a step without dropping.
#pragma once

#include <cmath>
#include <cstdint>

#include "pld/core/error.hpp"
#include "pld/schedule/presets.hpp"
#include "pld/schedule/schedule.hpp"

namespace pld {

// Mean expected kept fraction of layer work over steps [0, steps).
inline double cumulative_kept_fraction(const Schedule& schedule, std::int64_t steps) {
  if (steps <= 0) detail::throw_error("steps must be > 0, got ", steps);
  return schedule.mean_kept_fraction(0, steps);
}

// Speedup of a step whose layer stack does `kept_fraction` of its work, when the rest of the step
// costs `overhead` of an undropped step: 1 / (overhead + (1 - overhead) kept_fraction).
inline double ideal_speedup(double kept_fraction, double overhead = 0.0) {
  if (!(kept_fraction > 0.0 && kept_fraction <= 1.0))
    detail::throw_error("kept_fraction must be in (0, 1], got ", kept_fraction);
  if (!(overhead >= 0.0 && overhead < 1.0))
    detail::throw_error("overhead must be in [0, 1), got ", overhead);
  return 1.0 / (overhead + (1.0 - overhead) * kept_fraction);
}

struct SpeedupPlan {
  ScheduleSpec spec;     // the input spec with theta_bar (or keep_ratio for random) solved
  double knob = 1.0;     // the solved value
  double kept_fraction = 1.0;  // mean expected kept fraction over the run
  double speedup = 1.0;        // ideal speedup it implies
};

// Finds the theta_bar (presets pld, td_only, dd_only) or keep_ratio (random) whose schedule gives
// `target_speedup` over `steps` steps, by bisection: the kept fraction rises monotonically with
// the knob. The knob is searched in [kMinKnob, 1]; a target beyond that range is an error that
// says what is reachable.
inline SpeedupPlan plan_for_speedup(ScheduleSpec spec, std::int64_t steps, double target_speedup,
                                    double overhead = 0.0) {
  constexpr double kMinKnob = 1e-3;
  if (spec.preset == Preset::none) detail::throw_error("preset none never drops; nothing to plan");
  if (steps <= 0) detail::throw_error("steps must be > 0, got ", steps);
  if (!(std::isfinite(target_speedup) && target_speedup >= 1.0))
    detail::throw_error("target speedup must be >= 1, got ", target_speedup);
  ideal_speedup(1.0, overhead);  // validates overhead

  auto with_knob = [&](double knob) {
    ScheduleSpec s = spec;
    if (s.preset == Preset::random) s.keep_ratio = knob; else s.theta_bar = knob;
    return s;
  };
  auto speedup_at = [&](double knob) {
    return ideal_speedup(cumulative_kept_fraction(make_schedule(with_knob(knob)), steps), overhead);
  };
  const double best = speedup_at(kMinKnob);
  if (target_speedup > best)
    detail::throw_error("target speedup ", target_speedup, " is not reachable in ", steps,
                        " steps with preset ", to_string(spec.preset), ": at most ", best,
                        " (at ", spec.preset == Preset::random ? "keep_ratio" : "theta_bar", " = ",
                        kMinKnob, ")");
  double lo = kMinKnob, hi = 1.0;  // speedup_at(lo) >= target >= speedup_at(hi)
  for (int it = 0; it < 100 && hi - lo > 1e-12; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (speedup_at(mid) >= target_speedup) lo = mid; else hi = mid;
  }
  SpeedupPlan plan;
  plan.knob = lo;
  plan.spec = with_knob(lo);
  plan.kept_fraction = cumulative_kept_fraction(make_schedule(plan.spec), steps);
  plan.speedup = ideal_speedup(plan.kept_fraction, overhead);
  return plan;
}

}  // namespace pld
