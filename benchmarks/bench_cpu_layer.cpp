// What the CPU Pre-LN layer costs: forward, backward, forward+backward at BERT-mini (H=256, N=4),
// BERT-small (H=512, N=8) and BERT-base (H=768, N=12), T=128, a batch of 16 sequences, float,
// training mode (dropout 0.1 on all three sites, as BERT). Measured beside them in the same run:
//  - the ceiling: one plain Eigen float GEMM of the layer's largest shape, (B*T, H) x (H, 4H);
//  - a dropped layer (gate says skip), forward+backward, out of place (the copy is all it does).
// Counters: tokens/s (B*T per iteration) and GFLOP/s (GEMM FLOPs only, PreLnLayer::forward_flops;
// backward = 2x forward). scripts/bench-cpu-layer.sh turns the JSON into the ratio table.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "pld/cpu.hpp"

namespace {

constexpr int kBatch = 16, kSeq = 128;

struct Size {
  const char* name;
  int hidden, heads;
};
constexpr Size kSizes[] = {{"mini", 256, 4}, {"small", 512, 8}, {"base", 768, 12}};

pld::cpu::LayerConfig config_of(int size) {
  pld::cpu::LayerConfig c;
  c.hidden = kSizes[size].hidden;
  c.heads = kSizes[size].heads;
  return c;
}

struct Fixture {
  pld::cpu::PreLnLayer<float> layer;
  std::vector<float> x, y, dy, dx;
  pld::cpu::LayerStep step;
  explicit Fixture(int size) : layer(config_of(size)) {
    layer.params().init_normal(1);
    const std::size_t n = static_cast<std::size_t>(kBatch) * kSeq * kSizes[size].hidden;
    x.resize(n);
    dy.resize(n);
    y.resize(n);
    dx.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      x[i] = std::sin(0.01f * static_cast<float>(i));
      dy[i] = 1e-3f * std::cos(0.013f * static_cast<float>(i));
    }
    step.seed = 1;
    step.scale = 1.25;
  }
  void forward() {
    ++step.step;
    layer.forward(x.data(), y.data(), kBatch, kSeq, nullptr, step);
  }
  void backward() { layer.backward(dy.data(), dx.data()); }
};

void set_counters(benchmark::State& state, int size, double flops_per_iter) {
  state.SetLabel(kSizes[size].name);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(kBatch) * kSeq, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

double fwd_flops(int size) { return pld::cpu::PreLnLayer<float>::forward_flops(config_of(size), kBatch, kSeq); }

void BM_LayerForward(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  Fixture f(size);
  for (auto _ : state) {
    f.forward();
    benchmark::DoNotOptimize(f.y.data());
  }
  set_counters(state, size, fwd_flops(size));
}

void BM_LayerBackward(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  Fixture f(size);
  f.forward();
  for (auto _ : state) {
    f.backward();  // gradients accumulate; the saved activations are reused
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, size, 2 * fwd_flops(size));
}

void BM_LayerForwardBackward(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  Fixture f(size);
  for (auto _ : state) {
    f.forward();
    f.backward();
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, size, 3 * fwd_flops(size));
}

void BM_LayerDropped(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  Fixture f(size);
  f.step.kept = false;
  for (auto _ : state) {
    f.forward();
    f.backward();
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, size, 0.0);
}

// The ceiling: the layer's largest GEMM, (B*T, H) x (H, 4H), as one plain Eigen product.
void BM_GemmCeiling(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  const int M = kBatch * kSeq, K = kSizes[size].hidden, N = 4 * K;
  pld::cpu::MatrixR<float> a = pld::cpu::MatrixR<float>::Random(M, K), b = pld::cpu::MatrixR<float>::Random(N, K), c(M, N);
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
  }
  state.SetLabel(kSizes[size].name);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * K * N * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgName("size")->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
}

}  // namespace

BENCHMARK(BM_GemmCeiling)->Apply(sizes);
BENCHMARK(BM_LayerForward)->Apply(sizes);
BENCHMARK(BM_LayerBackward)->Apply(sizes);
BENCHMARK(BM_LayerForwardBackward)->Apply(sizes);
BENCHMARK(BM_LayerDropped)->Apply(sizes);

BENCHMARK_MAIN();
