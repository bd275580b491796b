// What the gate costs per training step: sampling a LayerPlan (Bernoulli, fixed-count,
// per-sample), evaluating the schedule, and a full Controller begin/end. The reference point
// measured in the same run is one Philox4x32-10 block: a Bernoulli plan costs about L of them.
// Goal (issue 2): under 1 us per step for L = 24.
#include <benchmark/benchmark.h>

#include "pld/pld.hpp"

namespace {

pld::Schedule pld_schedule(int layers) {
  pld::ScheduleSpec s;
  s.num_layers = layers;
  return pld::make_schedule(s);
}

void BM_Philox4x32_10(benchmark::State& state) {
  std::uint32_t i = 0;
  for (auto _ : state) {
    const pld::U32x4 r = pld::random_block(42, 1000, pld::RandomStream::layer_gate, 3, i++);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Philox4x32_10);

void BM_ScheduleKeepProbs(benchmark::State& state) {
  const int L = static_cast<int>(state.range(0));
  const pld::Schedule s = pld_schedule(L);
  std::vector<double> p(static_cast<std::size_t>(L));
  std::int64_t t = 0;
  for (auto _ : state) {
    s.keep_probs(t++, p.data());
    benchmark::DoNotOptimize(p.data());
  }
  state.SetItemsProcessed(state.iterations() * L);
}
BENCHMARK(BM_ScheduleKeepProbs)->ArgName("L")->Arg(12)->Arg(24)->Arg(48);

void plan_bench(benchmark::State& state, pld::GateConfig cfg, int batch) {
  const int L = static_cast<int>(state.range(0));
  const pld::Gate gate(pld_schedule(L), cfg);
  pld::LayerPlan plan;
  std::int64_t t = 100000;  // steady state: theta near theta_bar, layers really dropped
  for (auto _ : state) {
    gate.plan(t++, plan, true, batch);
    benchmark::DoNotOptimize(plan.keep.data());
  }
  state.SetItemsProcessed(state.iterations());  // plans (steps) per second
}

void BM_PlanBernoulli(benchmark::State& state) { plan_bench(state, {1, pld::Sampling::bernoulli}, 0); }
void BM_PlanFixedCount(benchmark::State& state) { plan_bench(state, {1, pld::Sampling::fixed_count}, 0); }
void BM_PlanPerSampleB32(benchmark::State& state) {
  plan_bench(state, {1, pld::Sampling::bernoulli, pld::Scaling::inverse_prob, pld::Granularity::sample}, 32);
}
BENCHMARK(BM_PlanBernoulli)->ArgName("L")->Arg(12)->Arg(24)->Arg(48);
BENCHMARK(BM_PlanFixedCount)->ArgName("L")->Arg(12)->Arg(24)->Arg(48);
BENCHMARK(BM_PlanPerSampleB32)->ArgName("L")->Arg(12)->Arg(24)->Arg(48);

void BM_ControllerStep(benchmark::State& state) {
  const int L = static_cast<int>(state.range(0));
  pld::Controller c(pld_schedule(L), {1});
  std::int64_t t = 100000;
  for (auto _ : state) {
    const pld::LayerPlan& p = c.begin_step(t++);
    benchmark::DoNotOptimize(p.keep.data());
    c.end_step({1.0, 128, 0.0});
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ControllerStep)->ArgName("L")->Arg(12)->Arg(24)->Arg(48);

}  // namespace

BENCHMARK_MAIN();
