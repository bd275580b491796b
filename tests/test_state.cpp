// save_state / restore_state: a resumed run makes exactly the decisions of the uninterrupted one,
// and a malformed state is a clear error.
#include <catch2/catch.hpp>

#include <cinttypes>
#include <cstdio>
#include <string>

#include "pld/hooks/controller.hpp"
#include "pld/schedule/presets.hpp"

using Catch::Matchers::Contains;

namespace {

pld::Controller make_controller(const pld::ScheduleSpec& spec, pld::GateConfig gate) {
  return pld::Controller(pld::make_schedule(spec), gate);
}

void run_steps(pld::Controller& c, std::int64_t begin, std::int64_t end, std::vector<pld::LayerPlan>* plans) {
  for (std::int64_t t = begin; t < end; ++t) {
    const pld::LayerPlan& p = c.begin_step(t, 8);
    if (plans) plans->push_back(p);
    c.end_step({1.0 / (t + 1), 64, 0.003});
  }
}

bool same_stats(const pld::ControllerStats& a, const pld::ControllerStats& b) {
  auto same = [](double x, double y) { return x == y || (x != x && y != y); };
  return a.step == b.step && same(a.theta, b.theta) && a.num_layers == b.num_layers &&
         a.layers_kept == b.layers_kept && same(a.expected_kept_fraction, b.expected_kept_fraction) &&
         same(a.realised_kept_fraction, b.realised_kept_fraction) && a.steps_done == b.steps_done &&
         same(a.expected_work, b.expected_work) && same(a.realised_work, b.realised_work) &&
         a.tokens == b.tokens && same(a.seconds, b.seconds) && same(a.last_loss, b.last_loss);
}

// Re-signs an edited state so the test reaches the parser check behind the checksum.
std::string resign(std::string text) {
  const auto pos = text.rfind("checksum ");
  std::string body = text.substr(0, pos);
  char sum[32];
  std::snprintf(sum, sizeof sum, "%016" PRIx64, pld::detail::fnv1a64(body));
  return body + "checksum " + sum + "\n";
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto pos = s.find(from);
  REQUIRE(pos != std::string::npos);
  return s.replace(pos, from.size(), to);
}

}  // namespace

TEST_CASE("a restored controller continues exactly like the uninterrupted one", "[state][determinism]") {
  pld::ScheduleSpec spec;
  spec.num_layers = 12;
  pld::GateConfig gate{987654321987654321ull};
  SECTION("pld, Bernoulli, per layer") {}
  SECTION("cosine decay, fixed count, per sample") {
    spec.decay = pld::TemporalKind::cosine;
    spec.decay_steps = 150;
    spec.delay = 20;
    gate.sampling = pld::Sampling::fixed_count;
    gate.granularity = pld::Granularity::sample;
  }
  SECTION("dd_only with a profile, unscaled") {
    spec.preset = pld::Preset::dd_only;
    spec.num_layers = 3;
    spec.profile = {0.1, 0.3, 1.0 / 3.0};
    gate.scaling = pld::Scaling::none;
  }

  pld::Controller whole = make_controller(spec, gate);
  std::vector<pld::LayerPlan> whole_plans;
  run_steps(whole, 0, 400, &whole_plans);

  pld::Controller first = make_controller(spec, gate);
  run_steps(first, 0, 200, nullptr);
  const std::string state = first.save_state();

  pld::Controller resumed = make_controller(spec, gate);
  resumed.restore_state(state);
  CHECK(same_stats(resumed.stats(), first.stats()));
  std::vector<pld::LayerPlan> resumed_plans;
  run_steps(resumed, 200, 400, &resumed_plans);
  for (std::size_t k = 0; k < resumed_plans.size(); ++k) {
    REQUIRE(resumed_plans[k].keep == whole_plans[200 + k].keep);
    REQUIRE(resumed_plans[k].sample_keep == whole_plans[200 + k].sample_keep);
    REQUIRE(resumed_plans[k].scale == whole_plans[200 + k].scale);
  }
  CHECK(same_stats(resumed.stats(), whole.stats()));
  CHECK(resumed.save_state() == whole.save_state());

  pld::Controller rebuilt = pld::Controller::from_state(state);
  CHECK(rebuilt.schedule() == first.schedule());
  CHECK(rebuilt.gate().config() == gate);
  CHECK(same_stats(rebuilt.stats(), first.stats()));
}

TEST_CASE("the evaluation mode is part of the state", "[state]") {
  pld::Controller c = make_controller({}, {1});
  c.eval();
  pld::Controller d = make_controller({}, {1});
  d.restore_state(c.save_state());
  CHECK_FALSE(d.training());
}

TEST_CASE("a state from another configuration is refused", "[state][errors]") {
  pld::ScheduleSpec spec;
  pld::Controller c = make_controller(spec, {1});
  run_steps(c, 0, 10, nullptr);
  const std::string state = c.save_state();
  pld::ScheduleSpec other = spec;
  other.theta_bar = 0.4;
  pld::Controller d = make_controller(other, {1});
  CHECK_THROWS_WITH(d.restore_state(state), Contains("different schedule"));
  pld::Controller e = make_controller(spec, {2});
  CHECK_THROWS_WITH(e.restore_state(state), Contains("different gate configuration"));
  CHECK(e.stats().steps_done == 0);  // a refused restore changes nothing
}

TEST_CASE("malformed states are clear errors", "[state][errors]") {
  pld::Controller c = make_controller({}, {1});
  run_steps(c, 0, 10, nullptr);
  const std::string good = c.save_state();
  pld::Controller d = make_controller({}, {1});

  CHECK_THROWS_WITH(d.restore_state(""), Contains("no checksum"));
  CHECK_THROWS_WITH(d.restore_state(good.substr(0, good.size() / 2)), Contains("no checksum"));
  CHECK_THROWS_WITH(d.restore_state(replace(good, "totals 10", "totals 11")), Contains("checksum mismatch"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "pld-controller-state 1", "pld-controller-state 2"))),
                    Contains("version 2"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "pld-controller-state", "something-else"))),
                    Contains("does not start"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "training 1\n", ""))), Contains("missing 'training'"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "training 1\n", "training 1\nextra 5\n"))),
                    Contains("unknown key 'extra'"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "layers 12", "layers twelve"))),
                    Contains("malformed integer"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "layers 12", "layers 4294967308"))),
                    Contains("'layers' must be in"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "temporal exponential 0.5", "temporal exponential 0.5x"))),
                    Contains("malformed number"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "temporal exponential", "temporal wavy"))),
                    Contains("wavy"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "training 1", "training 1 2"))), Contains("'training' has 2"));
  CHECK_THROWS_WITH(d.restore_state(resign(replace(good, "temporal exponential 0.5", "temporal exponential 1.5"))),
                    Contains("theta_bar"));
  CHECK(d.stats().steps_done == 0);
  d.restore_state(good);
  CHECK(d.stats().steps_done == 10);
}
