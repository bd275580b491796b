// pld-bert's CPU optimizer step (examples/bert/optimizer.hpp: the gradient norm, clipping and the
// AdamW or LAMB update over every tensor of a real pld-bert model) against the memory ceiling
// measured beside it: the same threads streaming the same bytes (AdamW reads the gradient twice,
// the norm's pass and the update's, and the weight, both moments once; writes the weight and both
// moments: 32 bytes a parameter; LAMB also writes and rereads its direction: 44). The step is
// memory-bound, so "% of the stream ceiling" is how close it is to what the machine can do.
//
//   build/bench/benchmarks/bench_bert_optimizer [--benchmark_filter=...]
//
// Sizes: BERT-mini (5.4M parameters, what scripts/demo.sh trains) and BERT-base with the same
// 8192-word vocabulary (~92M).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "model.hpp"
#include "optimizer.hpp"

namespace {

bert::ModelConfig config(int size) {
  bert::ModelConfig c;
  if (size == 1) {
    c.layers = 12;
    c.hidden = 768;
    c.heads = 12;
  }
  return c;
}

std::size_t count(const std::vector<bert::Param>& params) {
  std::size_t n = 0;
  for (const auto& p : params) n += p.size;
  return n;
}

void fill_grads(std::vector<bert::Param>& params) {
  for (auto& p : params)
    for (std::size_t i = 0; i < p.size; ++i) p.grad[i] = 1e-3f * static_cast<float>((i * 2654435761u) % 1000) - 0.5f;
}

void BM_OptimizerStep(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  const auto kind = state.range(1) == 0 ? bert::OptimizerKind::adamw : bert::OptimizerKind::lamb;
  auto model = std::make_unique<bert::BertMlm>(config(size));
  auto& params = model->params();
  fill_grads(params);
  bert::OptimizerConfig c;
  c.kind = kind;
  bert::Optimizer opt(c, params);
  const pld::LayerPlan plan;  // every layer kept (skip_dropped is off)
  for (int i = 0; i < 2; ++i) {  // warm: pages touched, threads up
    opt.clip(params);
    opt.update(params, 1e-6, plan);
  }
  for (auto _ : state) {
    benchmark::DoNotOptimize(opt.clip(params));
    opt.update(params, 1e-6, plan);
    benchmark::ClobberMemory();
  }
  const auto n = static_cast<double>(count(params));
  const double bytes = n * (kind == bert::OptimizerKind::adamw ? 32.0 : 44.0);
  state.counters["params"] = n;
  state.counters["GB/s"] = benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(size == 0 ? "mini " : "base ") + (kind == bert::OptimizerKind::adamw ? "adamw" : "lamb"));
}

// The ceiling: one OpenMP pass that reads 1 array of the model's size (the norm's traffic) and one
// that reads 4 and writes 3 (AdamW's): 32 bytes a parameter, with no arithmetic to wait for.
void BM_StreamCeiling(benchmark::State& state) {
  const auto n = static_cast<std::ptrdiff_t>(count(std::make_unique<bert::BertMlm>(config(static_cast<int>(state.range(0))))->params()));
  std::vector<float> g(static_cast<std::size_t>(n), 1.0f), m(g), v(g), w(g);
  double sink = 0.0;
  for (auto _ : state) {
    float s = 0.0f;  // simd: reassociated freely, so nothing but the memory limits it
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (std::ptrdiff_t i = 0; i < n; ++i) s += g[static_cast<std::size_t>(i)];
    sink += s;
    float* __restrict__ pw = w.data();
    float* __restrict__ pm = m.data();
    float* __restrict__ pv = v.data();
    const float* __restrict__ pg = g.data();
#pragma omp parallel for schedule(static)
    for (std::ptrdiff_t i = 0; i < n; ++i) {
      pm[i] = 0.9f * pm[i] + 0.1f * pg[i];
      pv[i] = 0.999f * pv[i] + 0.001f * pg[i];
      pw[i] -= 1e-9f * (pm[i] + pv[i]);
    }
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(sink);
  state.counters["params"] = static_cast<double>(n);
  state.counters["GB/s"] = benchmark::Counter(static_cast<double>(n) * 32.0 * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(state.range(0) == 0 ? "mini" : "base");
}

}  // namespace

BENCHMARK(BM_StreamCeiling)->ArgNames({"size"})->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OptimizerStep)->ArgNames({"size", "lamb"})->ArgsProduct({{0, 1}, {0, 1}})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_MAIN();
