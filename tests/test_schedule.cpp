// Temporal, depth and composed schedules: values at known points, limits, monotonicity, presets,
// and every invalid parameter.
#include <catch2/catch.hpp>

#include <cmath>

#include "pld/schedule/budget.hpp"
#include "pld/schedule/presets.hpp"
#include "pld/schedule/schedule.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;
using pld::DepthSchedule;
using pld::Schedule;
using pld::TemporalSchedule;

TEST_CASE("exponential decay follows the PLD formula", "[schedule]") {
  const auto t = TemporalSchedule::exponential(0.5, 0.001);
  CHECK(t.theta(0) == 1.0);  // t = 0 keeps everything
  CHECK_THAT(t.theta(1000), WithinRel(0.5 * std::exp(-1.0) + 0.5, 1e-15));
  CHECK_THAT(t.theta(5000), WithinRel(0.5 * std::exp(-5.0) + 0.5, 1e-15));
  CHECK_THAT(t.theta(100000000), WithinAbs(0.5, 1e-15));
  const auto never = TemporalSchedule::exponential(1.0, 0.01);
  for (std::int64_t s : {0, 1, 100, 1000000}) CHECK(never.theta(s) == 1.0);
  CHECK(never.never_drops());
}

TEST_CASE("every temporal form starts at 1, never rises, and ends at theta_bar", "[schedule]") {
  const auto kind = GENERATE(0, 1, 2);
  const TemporalSchedule t = kind == 0   ? TemporalSchedule::exponential(0.3, 0.002, 50)
                             : kind == 1 ? TemporalSchedule::linear(0.3, 2000, 50)
                                         : TemporalSchedule::cosine(0.3, 2000, 50);
  CHECK(t.theta(0) == 1.0);
  CHECK(t.theta(50) == 1.0);  // delay: the clock starts at t = 50
  double prev = 1.0;
  for (std::int64_t s = 0; s < 20000; s += 7) {
    const double v = t.theta(s);
    REQUIRE(v <= prev);
    REQUIRE(v >= 0.3);
    prev = v;
  }
  CHECK_THAT(t.theta(100000), WithinAbs(0.3, 1e-12));
}

TEST_CASE("linear and cosine decay at their midpoints and ends", "[schedule]") {
  CHECK_THAT(TemporalSchedule::linear(0.4, 1000).theta(500), WithinRel(0.7, 1e-15));
  CHECK_THAT(TemporalSchedule::cosine(0.4, 1000).theta(500), WithinRel(0.7, 1e-15));
  CHECK(TemporalSchedule::linear(0.4, 1000).theta(1000) == 0.4);
  CHECK(TemporalSchedule::cosine(0.4, 1000).theta(1000) == 0.4);
  CHECK_THAT(TemporalSchedule::linear(0.4, 1000, 200).theta(700), WithinRel(0.7, 1e-15));
  CHECK(TemporalSchedule::constant(0.6).theta(0) == 0.6);
  CHECK(TemporalSchedule::constant(0.6, 10).theta(9) == 1.0);
  CHECK(TemporalSchedule::constant(0.6, 10).theta(10) == 0.6);
  CHECK(TemporalSchedule().theta(123) == 1.0);
}

TEST_CASE("sum_theta equals the direct sum", "[schedule]") {
  const TemporalSchedule forms[] = {
      TemporalSchedule(),
      TemporalSchedule::constant(0.7, 13),
      TemporalSchedule::exponential(0.5, 0.001),
      TemporalSchedule::exponential(0.25, 0.03, 40),
      TemporalSchedule::exponential(0.5, 0.0),
      TemporalSchedule::linear(0.3, 500, 17),
      TemporalSchedule::cosine(0.3, 500, 17),
  };
  for (const auto& t : forms) {
    for (auto range : {std::pair<std::int64_t, std::int64_t>{0, 1}, {0, 3000}, {10, 20}, {450, 620},
                       {700, 2500}, {5, 5}}) {
      double direct = 0.0;
      for (std::int64_t s = range.first; s < range.second; ++s) direct += t.theta(s);
      INFO(pld::to_string(t.kind()) << " [" << range.first << ", " << range.second << ")");
      CHECK_THAT(t.sum_theta(range.first, range.second), WithinAbs(direct, 1e-9 * (1.0 + direct)));
    }
  }
}

TEST_CASE("depth schedules: uniform, PLD linear (l = 1..L), profile", "[schedule]") {
  const int L = 12;
  const double theta = 0.5;
  const Schedule pld(TemporalSchedule::constant(theta), DepthSchedule::linear(), L);
  // Index i holds layer l = i + 1: p_1 = 1 - (1/L)(1 - theta), p_L = theta.
  CHECK_THAT(pld.keep_prob(0, 0), WithinRel(1.0 - (1.0 / L) * 0.5, 1e-15));
  CHECK_THAT(pld.keep_prob(0, L - 1), WithinRel(theta, 1e-15));
  for (int i = 1; i < L; ++i) CHECK(pld.keep_prob(0, i) < pld.keep_prob(0, i - 1));
  // mean_l p_l = 1 - (1 - theta)(L + 1) / (2L) = 0.729166... for theta = 0.5, L = 12.
  CHECK_THAT(pld.expected_kept_fraction(0), WithinRel(1.0 - 0.5 * 13.0 / 24.0, 1e-15));
  CHECK_THAT(pld.expected_kept_fraction(0), WithinAbs(0.729, 0.001));

  const Schedule uni(TemporalSchedule::constant(theta), DepthSchedule::uniform(), L);
  for (int i = 0; i < L; ++i) CHECK(uni.keep_prob(0, i) == theta);

  const Schedule prof(TemporalSchedule::constant(theta), DepthSchedule::profile({0.0, 1.0, 0.5}), 3);
  CHECK(prof.keep_prob(0, 0) == 1.0);
  CHECK(prof.keep_prob(0, 1) == 0.5);
  CHECK(prof.keep_prob(0, 2) == 0.75);
  CHECK_THAT(prof.expected_kept_fraction(0), WithinRel(0.75, 1e-15));

  double probs[L];
  pld.keep_probs(0, probs);
  for (int i = 0; i < L; ++i) CHECK(probs[i] == pld.keep_prob(0, i));
}

TEST_CASE("p_l(t) decays in time and depth", "[schedule]") {
  const Schedule s(TemporalSchedule::exponential(0.5, 0.001), DepthSchedule::linear(), 24);
  for (int i = 0; i < 24; ++i) CHECK(s.keep_prob(0, i) == 1.0);
  for (std::int64_t t = 1; t < 10000; t += 97)
    for (int i = 0; i < 24; ++i) {
      REQUIRE(s.keep_prob(t, i) <= s.keep_prob(t - 1, i));
      if (i > 0) REQUIRE(s.keep_prob(t, i) < s.keep_prob(t, i - 1));
    }
}

TEST_CASE("invalid parameters throw pld::Error naming the value", "[schedule][errors]") {
  for (double bad : {0.0, -0.1, 1.5, std::nan("")}) {
    CHECK_THROWS_AS(TemporalSchedule::exponential(bad, 0.001), pld::Error);
    CHECK_THROWS_AS(TemporalSchedule::linear(bad, 10), pld::Error);
    CHECK_THROWS_AS(TemporalSchedule::cosine(bad, 10), pld::Error);
    CHECK_THROWS_AS(TemporalSchedule::constant(bad), pld::Error);
  }
  CHECK_THROWS_WITH(TemporalSchedule::exponential(1.5, 0.001), Contains("theta_bar") && Contains("1.5"));
  CHECK_THROWS_WITH(TemporalSchedule::exponential(0.5, -2.0), Contains("gamma") && Contains("-2"));
  CHECK_THROWS_AS(TemporalSchedule::exponential(0.5, INFINITY), pld::Error);
  CHECK_THROWS_WITH(TemporalSchedule::linear(0.5, 0), Contains("steps") && Contains("0"));
  CHECK_THROWS_WITH(TemporalSchedule::cosine(0.5, -4), Contains("-4"));
  CHECK_THROWS_WITH(TemporalSchedule::exponential(0.5, 0.001, -3), Contains("delay") && Contains("-3"));
  CHECK_THROWS_WITH(DepthSchedule::profile({0.5, 1.25}), Contains("layer 2") && Contains("1.25"));
  CHECK_THROWS_WITH(DepthSchedule::profile({0.5, -0.25}), Contains("-0.25"));
  CHECK_THROWS_AS(DepthSchedule::profile({}), pld::Error);
  CHECK_THROWS_AS(DepthSchedule::profile(std::vector<double>(300, 0.5)), pld::Error);
  CHECK_THROWS_WITH(Schedule(TemporalSchedule(), DepthSchedule::linear(), 0), Contains("num_layers") && Contains("0"));
  CHECK_THROWS_AS(Schedule(TemporalSchedule(), DepthSchedule::linear(), 70000), pld::Error);
  CHECK_THROWS_WITH(Schedule(TemporalSchedule(), DepthSchedule::profile({0.1, 0.2}), 3),
                    Contains("2 weights") && Contains("num_layers = 3"));
  CHECK_THROWS_AS(pld::parse_temporal_kind("exponentiall"), pld::Error);
  CHECK_THROWS_AS(pld::parse_depth_kind("quadratic"), pld::Error);
  CHECK_THROWS_WITH(pld::parse_preset("progressive"), Contains("progressive"));
}

TEST_CASE("presets are the rows of the PLD ablation", "[schedule][presets]") {
  pld::ScheduleSpec spec;
  spec.num_layers = 12;

  spec.preset = pld::Preset::none;
  const Schedule none = pld::make_schedule(spec);
  CHECK(none.never_drops());
  CHECK(none.keep_prob(100000, 11) == 1.0);

  spec.preset = pld::Preset::pld;
  const Schedule full = pld::make_schedule(spec);
  CHECK(full == Schedule(TemporalSchedule::exponential(0.5, 0.001), DepthSchedule::linear(), 12));

  spec.preset = pld::Preset::td_only;
  CHECK(pld::make_schedule(spec) == Schedule(TemporalSchedule::exponential(0.5, 0.001), DepthSchedule::uniform(), 12));

  spec.preset = pld::Preset::dd_only;
  CHECK(pld::make_schedule(spec) == Schedule(TemporalSchedule::constant(0.5), DepthSchedule::linear(), 12));

  spec.preset = pld::Preset::random;
  const Schedule random = pld::make_schedule(spec);
  // Default keep ratio: PLD's steady-state mean, 1 - 0.5 * 13/24.
  for (std::int64_t t : {0, 10, 100000})
    for (int i = 0; i < 12; ++i) CHECK_THAT(random.keep_prob(t, i), WithinRel(1.0 - 0.5 * 13.0 / 24.0, 1e-15));
  spec.keep_ratio = 0.8;
  CHECK(pld::make_schedule(spec).keep_prob(5, 3) == 0.8);

  // Replacing a preset's parts.
  pld::ScheduleSpec lin;
  lin.decay = pld::TemporalKind::cosine;
  lin.decay_steps = 1000;
  CHECK(pld::make_schedule(lin).temporal() == TemporalSchedule::cosine(0.5, 1000));
  pld::ScheduleSpec prof;
  prof.preset = pld::Preset::dd_only;
  prof.num_layers = 2;
  prof.profile = {0.2, 0.4};
  CHECK(pld::make_schedule(prof).keep_prob(0, 1) == 1.0 - 0.4 * 0.5);

  for (auto name : {"none", "pld", "random", "td_only", "dd_only"})
    CHECK(std::string(pld::to_string(pld::parse_preset(name))) == name);
}

TEST_CASE("preset specs reject parameters that do not apply", "[schedule][presets][errors]") {
  pld::ScheduleSpec s;
  s.preset = pld::Preset::none;
  s.decay = pld::TemporalKind::linear;
  CHECK_THROWS_WITH(pld::make_schedule(s), Contains("decay") && Contains("none"));
  s = {};
  s.preset = pld::Preset::td_only;
  s.profile = {0.5};
  s.num_layers = 1;
  CHECK_THROWS_WITH(pld::make_schedule(s), Contains("profile") && Contains("td_only"));
  s = {};
  s.keep_ratio = 0.5;
  CHECK_THROWS_WITH(pld::make_schedule(s), Contains("keep_ratio"));
  s = {};
  s.preset = pld::Preset::random;
  s.keep_ratio = 0.0;
  CHECK_THROWS_WITH(pld::make_schedule(s), Contains("keep_ratio") && Contains("0"));
  s = {};
  s.decay = pld::TemporalKind::linear;  // linear decay needs decay_steps
  CHECK_THROWS_WITH(pld::make_schedule(s), Contains("decay steps"));
}
