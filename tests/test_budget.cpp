// Compute accounting and the theta_bar planner.
#include <catch2/catch.hpp>

#include "pld/schedule/budget.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

TEST_CASE("cumulative kept fraction is the mean of the per-step expectation", "[budget]") {
  for (auto preset : {pld::Preset::none, pld::Preset::pld, pld::Preset::random, pld::Preset::td_only,
                      pld::Preset::dd_only}) {
    pld::ScheduleSpec spec;
    spec.preset = preset;
    spec.num_layers = 24;
    spec.delay = 100;
    const pld::Schedule s = pld::make_schedule(spec);
    const std::int64_t T = 20000;
    double direct = 0.0;
    for (std::int64_t t = 0; t < T; ++t) direct += s.expected_kept_fraction(t);
    INFO(pld::to_string(preset));
    CHECK_THAT(pld::cumulative_kept_fraction(s, T), WithinRel(direct / T, 1e-10));
  }
}

TEST_CASE("ideal speedup", "[budget]") {
  CHECK(pld::ideal_speedup(1.0) == 1.0);
  CHECK_THAT(pld::ideal_speedup(0.5), WithinRel(2.0, 1e-15));
  CHECK_THAT(pld::ideal_speedup(0.5, 0.2), WithinRel(1.0 / (0.2 + 0.8 * 0.5), 1e-15));
  CHECK_THROWS_AS(pld::ideal_speedup(0.0), pld::Error);
  CHECK_THROWS_AS(pld::ideal_speedup(1.2), pld::Error);
  CHECK_THROWS_WITH(pld::ideal_speedup(0.5, 1.0), Contains("overhead"));
}

TEST_CASE("the planner solves theta_bar for a target speedup", "[budget][plan]") {
  const auto preset = GENERATE(pld::Preset::pld, pld::Preset::td_only, pld::Preset::dd_only, pld::Preset::random);
  pld::ScheduleSpec spec;
  spec.preset = preset;
  spec.num_layers = 12;
  const std::int64_t T = 100000;
  for (double target : {1.05, 1.2, 1.3}) {
    const pld::SpeedupPlan plan = pld::plan_for_speedup(spec, T, target, 0.1);
    INFO(pld::to_string(preset) << " target " << target);
    CHECK_THAT(plan.speedup, WithinRel(target, 1e-8));
    // The plan's spec reproduces it independently.
    const double kept = pld::cumulative_kept_fraction(pld::make_schedule(plan.spec), T);
    CHECK_THAT(pld::ideal_speedup(kept, 0.1), WithinRel(target, 1e-8));
    CHECK(plan.knob > 0.0);
    CHECK(plan.knob < 1.0);
  }
}

TEST_CASE("the planner refuses what cannot be planned", "[budget][plan][errors]") {
  pld::ScheduleSpec spec;
  CHECK_THROWS_WITH(pld::plan_for_speedup(spec, 1000, 10.0), Contains("not reachable") && Contains("at most"));
  CHECK_THROWS_WITH(pld::plan_for_speedup(spec, 1000, 0.9), Contains("0.9"));
  CHECK_THROWS_AS(pld::plan_for_speedup(spec, 0, 1.1), pld::Error);
  spec.preset = pld::Preset::none;
  CHECK_THROWS_WITH(pld::plan_for_speedup(spec, 1000, 1.1), Contains("none"));
}
