// The gate: LayerPlan contents, evaluation mode, scaling, determinism, fixed-count counts and
// per-sample masks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>

#include "pld/gate/gate.hpp"
#include "pld/schedule/presets.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinRel;

namespace {

pld::Schedule pld_schedule(int layers, double theta_bar = 0.5) {
  pld::ScheduleSpec s;
  s.num_layers = layers;
  s.theta_bar = theta_bar;
  return pld::make_schedule(s);
}

bool same_plan(const pld::LayerPlan& a, const pld::LayerPlan& b) {
  return a.step == b.step && a.keep == b.keep && a.scale == b.scale && a.prob == b.prob &&
         a.sample_keep == b.sample_keep && a.theta == b.theta;
}

}  // namespace

TEST_CASE("a plan carries p, keep and 1/p scale for kept layers", "[gate]") {
  const pld::Gate gate(pld_schedule(12), {42});
  const pld::LayerPlan plan = gate.plan(5000);
  REQUIRE(plan.num_layers() == 12);
  CHECK(plan.theta == gate.schedule().theta(5000));
  int kept = 0;
  for (int i = 0; i < 12; ++i) {
    CHECK(plan.prob[i] == gate.schedule().keep_prob(5000, i));
    if (plan.kept(i)) {
      ++kept;
      CHECK(plan.gate_scale(i) == 1.0 / plan.prob[i]);
    } else {
      CHECK(plan.gate_scale(i) == 0.0);
    }
  }
  CHECK(plan.num_kept() == kept);
  CHECK(plan.kept_fraction() == kept / 12.0);
  CHECK_THAT(plan.expected_kept_fraction(), WithinRel(gate.schedule().expected_kept_fraction(5000), 1e-12));
}

TEST_CASE("unscaled gates use scale 1, evaluation keeps everything with scale 1", "[gate]") {
  const pld::Gate unscaled(pld_schedule(12), {1, pld::Sampling::bernoulli, pld::Scaling::none});
  const pld::LayerPlan p = unscaled.plan(9000);
  for (int i = 0; i < 12; ++i) CHECK(p.gate_scale(i) == (p.kept(i) ? 1.0 : 0.0));
  CHECK(p.num_kept() < 12);  // at theta ~ 0.5 some layer is dropped for this seed and step

  const pld::Gate gate(pld_schedule(12), {1});
  const pld::LayerPlan e = gate.plan(9000, /*training=*/false);
  CHECK(e.num_kept() == 12);
  CHECK(e.theta == 1.0);
  for (int i = 0; i < 12; ++i) {
    CHECK(e.gate_scale(i) == 1.0);
    CHECK(e.prob[i] == 1.0);
  }
}

TEST_CASE("t = 0 keeps every layer and theta_bar = 1 never drops", "[gate]") {
  const auto sampling = GENERATE(pld::Sampling::bernoulli, pld::Sampling::fixed_count);
  const pld::Gate start(pld_schedule(24), {3, sampling});
  CHECK(start.plan(0).num_kept() == 24);
  const pld::Gate never(pld_schedule(24, 1.0), {3, sampling});
  for (std::int64_t t = 0; t < 5000; t += 13) {
    const pld::LayerPlan p = never.plan(t);
    REQUIRE(p.num_kept() == 24);
    for (int i = 0; i < 24; ++i) REQUIRE(p.gate_scale(i) == 1.0);
  }
}

TEST_CASE("a plan is a pure function of (seed, step): any order, any rank", "[gate][determinism]") {
  const auto sampling = GENERATE(pld::Sampling::bernoulli, pld::Sampling::fixed_count);
  const auto granularity = GENERATE(pld::Granularity::layer, pld::Granularity::sample);
  const pld::GateConfig cfg{1234, sampling, pld::Scaling::inverse_prob, granularity};
  const pld::Gate rank0(pld_schedule(12), cfg);
  const pld::Gate rank1(pld_schedule(12), cfg);
  std::vector<pld::LayerPlan> forward;
  for (std::int64_t t = 0; t < 300; ++t) forward.push_back(rank0.plan(t, true, 8));
  pld::LayerPlan reused;
  for (std::int64_t t = 299; t >= 0; --t) {
    rank1.plan(t, reused, true, 8);  // reverse order, storage reused
    REQUIRE(same_plan(reused, forward[static_cast<std::size_t>(t)]));
  }
  // Another seed gives other decisions.
  const pld::Gate other(pld_schedule(12), {1235, sampling, pld::Scaling::inverse_prob, granularity});
  int differ = 0;
  for (std::int64_t t = 1000; t < 1100; ++t) differ += !same_plan(other.plan(t, true, 8), rank0.plan(t, true, 8));
  CHECK(differ > 50);
}

TEST_CASE("fixed-count keeps floor or ceil of sum p every step", "[gate][fixed_count]") {
  std::vector<pld::Schedule> schedules = {pld_schedule(12), pld_schedule(24, 0.3), pld_schedule(48, 0.7),
                                          pld::Schedule(pld::TemporalSchedule::constant(0.5),
                                                        pld::DepthSchedule::profile({0.0, 1.0, 0.25, 0.8, 1.0}), 5)};
  for (const auto& s : schedules) {
    const pld::Gate gate(s, {77, pld::Sampling::fixed_count});
    pld::LayerPlan p;
    for (std::int64_t t = 0; t < 20000; t += 3) {
      gate.plan(t, p);
      double sum = 0.0;
      for (double q : p.prob) sum += q;
      const int k = p.num_kept();
      REQUIRE((k == static_cast<int>(std::floor(sum + 1e-12)) || k == static_cast<int>(std::ceil(sum - 1e-12))));
      for (int i = 0; i < s.num_layers(); ++i)
        if (p.prob[i] == 1.0) REQUIRE(p.kept(i));  // p = 1 is always kept
    }
  }
}

TEST_CASE("per-sample mode decides each row, fixed-count keeps floor or ceil of batch * p", "[gate][per_sample]") {
  const int B = 32;
  for (auto sampling : {pld::Sampling::bernoulli, pld::Sampling::fixed_count}) {
    const pld::Gate gate(pld_schedule(6, 0.4), {9, sampling, pld::Scaling::inverse_prob, pld::Granularity::sample});
    const pld::LayerPlan p = gate.plan(20000, true, B);
    REQUIRE(p.per_sample());
    REQUIRE(p.sample_keep.size() == 6u * B);
    std::size_t total = 0;
    for (int i = 0; i < 6; ++i) {
      const auto rows = p.kept_rows(i);
      total += rows.size();
      CHECK(p.kept(i) == !rows.empty());
      for (int r : rows) CHECK(p.sample_kept(i, r));
      CHECK(std::is_sorted(rows.begin(), rows.end()));
      if (sampling == pld::Sampling::fixed_count) {
        const double expect = B * p.prob[i];
        CHECK((rows.size() == static_cast<std::size_t>(std::floor(expect)) ||
               rows.size() == static_cast<std::size_t>(std::ceil(expect))));
      }
    }
    CHECK(p.kept_fraction() == static_cast<double>(total) / (6.0 * B));
    const pld::LayerPlan e = gate.plan(20000, false, B);
    CHECK(e.kept_fraction() == 1.0);
    CHECK(e.kept_rows(5).size() == static_cast<std::size_t>(B));
    // Evaluation needs no batch: every row runs every layer, so the plan is a per-layer one
    // (pld-bert's evaluation once failed here in per-sample mode).
    const pld::LayerPlan eb = gate.plan(20000, false);
    CHECK_FALSE(eb.per_sample());
    CHECK(eb.num_kept() == 6);
    for (int i = 0; i < 6; ++i) CHECK(eb.gate_scale(i) == 1.0);
  }
}

TEST_CASE("the per-row decision is the same function the host plan uses", "[gate][per_sample]") {
  const pld::Gate gate(pld_schedule(4, 0.3), {5, pld::Sampling::bernoulli, pld::Scaling::inverse_prob,
                                              pld::Granularity::sample});
  const pld::LayerPlan p = gate.plan(7777, true, 16);
  for (int i = 0; i < 4; ++i)
    for (int b = 0; b < 16; ++b) CHECK(p.sample_kept(i, b) == pld::sample_kept(5, 7777, i, b, p.prob[i]));
}

TEST_CASE("gate errors", "[gate][errors]") {
  const pld::Gate per_sample(pld_schedule(4), {0, pld::Sampling::bernoulli, pld::Scaling::inverse_prob,
                                               pld::Granularity::sample});
  CHECK_THROWS_WITH(per_sample.plan(10), Contains("batch"));
  CHECK_THROWS_WITH(per_sample.plan(10, false, -2), Contains("batch must be >= 0"));
  CHECK_THROWS_WITH(pld::Gate(pld_schedule(4)).plan(-1), Contains("-1"));
  const pld::LayerPlan p = per_sample.plan(10, true, 4);
  CHECK_THROWS_AS(p.sample_kept(0, 4), pld::Error);
  CHECK_THROWS_AS(pld::parse_sampling("stratified"), pld::Error);
  CHECK_THROWS_AS(pld::parse_scaling("sqrt"), pld::Error);
  CHECK_THROWS_AS(pld::parse_granularity("token"), pld::Error);
}
