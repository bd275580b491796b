// The Controller: the step protocol, statistics, evaluation mode and observers.
#include <catch2/catch.hpp>

#include <cmath>

#include "pld/hooks/controller.hpp"
#include "pld/schedule/budget.hpp"
#include "pld/schedule/presets.hpp"

using Catch::Matchers::Contains;
using Catch::Matchers::WithinAbs;
using Catch::Matchers::WithinRel;

namespace {

pld::Controller make_controller(std::uint64_t seed = 11, int layers = 12) {
  pld::ScheduleSpec s;
  s.num_layers = layers;
  return pld::Controller(pld::make_schedule(s), pld::GateConfig{seed});
}

}  // namespace

TEST_CASE("begin_step returns the gate's plan and end_step accumulates totals", "[controller]") {
  pld::Controller c = make_controller();
  double expected = 0.0, realised = 0.0;
  for (std::int64_t t = 0; t < 500; ++t) {
    const pld::LayerPlan& p = c.begin_step(t);
    const pld::LayerPlan direct = c.gate().plan(t);
    REQUIRE(p.keep == direct.keep);
    REQUIRE(c.stats().layers_kept == p.num_kept());
    REQUIRE(c.stats().theta == c.schedule().theta(t));
    expected += p.expected_kept_fraction();
    realised += p.kept_fraction();
    c.end_step({2.0 + t, 128, 0.01});
  }
  const pld::ControllerStats& s = c.stats();
  CHECK(s.steps_done == 500);
  CHECK(s.tokens == 500 * 128);
  CHECK_THAT(s.seconds, WithinRel(5.0, 1e-12));
  CHECK(s.last_loss == 501.0);
  CHECK_THAT(s.expected_work, WithinRel(expected, 1e-12));
  CHECK_THAT(s.realised_work, WithinRel(realised, 1e-12));
  CHECK_THAT(s.layer_work_saved(), WithinRel(1.0 - realised / 500.0, 1e-12));
  CHECK_THAT(s.tokens_per_second(), WithinRel(500 * 128 / 5.0, 1e-12));
}

TEST_CASE("realised work saved converges to the expected saving", "[controller][statistics]") {
  pld::Controller c = make_controller(5, 24);
  const int N = 20000;
  for (std::int64_t t = 0; t < N; ++t) {
    c.begin_step(t);
    c.end_step();
  }
  // Per step the realised kept fraction has variance sum_l p(1-p) / L^2 <= 1 / (4L); 5 sigma.
  const double bound = 5.0 * std::sqrt(1.0 / (4.0 * 24) / N);
  CHECK_THAT(c.stats().mean_realised_kept(), WithinAbs(c.stats().mean_expected_kept(), bound));
  CHECK_THAT(c.stats().mean_expected_kept(),
             WithinRel(pld::cumulative_kept_fraction(c.schedule(), N), 1e-9));
  CHECK(c.stats().layer_work_saved() > 0.2);
}

TEST_CASE("evaluation keeps every layer and leaves the totals alone", "[controller]") {
  pld::Controller c = make_controller();
  c.begin_step(3000);
  c.end_step({1.0, 10, 0.5});
  const pld::ControllerStats before = c.stats();
  c.eval();
  CHECK_FALSE(c.training());
  const pld::LayerPlan& p = c.begin_step(3001);
  CHECK(p.num_kept() == 12);
  for (int i = 0; i < 12; ++i) CHECK(p.gate_scale(i) == 1.0);
  c.end_step({9.0, 10, 0.5});
  CHECK(c.stats().steps_done == before.steps_done);
  CHECK(c.stats().tokens == before.tokens);
  CHECK(c.stats().last_loss == 1.0);
  c.train();
  CHECK(c.training());
}

TEST_CASE("observers see every step and can be removed", "[controller][observers]") {
  pld::Controller c = make_controller();
  int begins = 0, ends = 0;
  std::int64_t last_step = -1;
  double last_loss = 0.0;
  const auto b = c.on_step_begin([&](const pld::LayerPlan& p, const pld::ControllerStats& s) {
    ++begins;
    last_step = p.step;
    CHECK(s.step == p.step);
  });
  c.on_step_end([&](const pld::LayerPlan&, const pld::StepReport& r, const pld::ControllerStats& s) {
    ++ends;
    last_loss = r.loss;
    if (!std::isnan(r.loss)) CHECK(s.last_loss == r.loss);  // a NaN loss keeps the last real one
  });
  for (std::int64_t t = 10; t < 20; ++t) {
    c.begin_step(t);
    c.end_step({static_cast<double>(t), 0, 0.0});
  }
  CHECK(begins == 10);
  CHECK(ends == 10);
  CHECK(last_step == 19);
  CHECK(last_loss == 19.0);
  CHECK(c.remove_observer(b));
  CHECK_FALSE(c.remove_observer(b));
  c.begin_step(20);
  c.end_step();
  CHECK(begins == 10);
  CHECK(ends == 11);
}

TEST_CASE("the step protocol is enforced", "[controller][errors]") {
  pld::Controller c = make_controller();
  CHECK_THROWS_WITH(c.end_step(), Contains("without a matching begin_step"));
  c.begin_step(4);
  CHECK_THROWS_WITH(c.begin_step(5), Contains("step 4 is still open"));
  CHECK_THROWS_AS(c.eval(), pld::Error);
  CHECK_THROWS_AS(c.restore_state(c.save_state()), pld::Error);
  CHECK_THROWS_WITH(c.end_step({0.0, -5, 0.0}), Contains("-5"));
  CHECK_THROWS_AS(c.end_step({0.0, 0, -1.0}), pld::Error);
  c.end_step();
  CHECK_THROWS_AS(c.begin_step(-2), pld::Error);
  CHECK_FALSE(c.step_open());
}
