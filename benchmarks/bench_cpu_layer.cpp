// What the CPU Pre-LN layer costs: forward, backward, forward+backward at BERT-mini (H=256, N=4),
// BERT-small (H=512, N=8) and BERT-base (H=768, N=12), T=128, a batch of 16 sequences, float
// activations with fp32 or bf16 products (precision 0 / 1), training mode (dropout 0.1 on all
// three sites, as BERT). Measured beside them in the same run:
//  - the ceiling: oneDNN's matmul of the layer's largest shape, (B*T, H) x (H, 4H), with operands
//    already in the precision (no conversion: the layer pays for its own), fp32 and bf16;
//    Eigen's product where pld was built without oneDNN;
//  - a dropped layer (gate says skip), forward+backward, out of place (the copy is all it does);
//  - the shared layer logic on the CPU backend driven directly (pld::cpu::SharedPreLnLayer, one
//    workspace allocated once), forward+backward on the same inputs, also with bf16 storage
//    (bf16:2). Since session 11 PreLnLayer is this logic too (owning its workspace), so for fp32
//    and bf16 products the two agree up to PreLnLayer's workspace handling; bf16:2 is the figure
//    against PreLnLayer's bf16 products.
// Counters: tokens/s (B*T per iteration) and GFLOP/s (GEMM FLOPs only, PreLnLayer::forward_flops;
// backward = 2x forward). scripts/bench-cpu-layer.sh turns the JSON into the ratio table.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstring>
#include <string>
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

pld::cpu::Precision precision_of(const benchmark::State& state) {
  return state.range(1) ? pld::cpu::Precision::bf16 : pld::cpu::Precision::fp32;
}

struct Fixture {
  pld::cpu::PreLnLayer<float> layer;
  std::vector<float> x, y, dy, dx;
  pld::cpu::LayerStep step;
  Fixture(int size, pld::cpu::Precision precision) : layer(config_of(size), precision) {
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

// bf16 needs oneDNN with a bf16 matmul on this CPU; without either, those cases are reported as
// skipped (Gemm would widen the operands for the fp32 kernel: correct, but no bf16 figure).
bool bf16_runnable(benchmark::State& state) {
  if (!pld::cpu::has_onednn()) {
    state.SkipWithError("bf16 products need oneDNN (this build has none)");
    return false;
  }
  if (!pld::cpu::onednn_has_bf16_matmul()) {
    state.SkipWithError(("oneDNN has no bf16 matmul on this CPU (ISA " + pld::cpu::cpu_isa_name() +
                         "): bf16 products would be widened to the fp32 kernel; the fp32 rows are this CPU's figures")
                            .c_str());
    return false;
  }
  return true;
}
bool runnable(benchmark::State& state) { return precision_of(state) != pld::cpu::Precision::bf16 || bf16_runnable(state); }

void set_counters(benchmark::State& state, double flops_per_iter, const std::string& impl = "") {
  const int size = static_cast<int>(state.range(0));
  state.SetLabel(std::string(kSizes[size].name) + " " + pld::cpu::to_string(precision_of(state)) + (impl.empty() ? "" : " " + impl));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(kBatch) * kSeq, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(flops_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

// Warm-up: every benchmark runs its work once before the timed loop. The first call touches the
// workspace and outputs for the first time (page faults: ~10^5 pages at BERT-base) and creates
// oneDNN's primitives (JIT). With --benchmark_min_time 0.5 a base forward+backward times only 1-2
// iterations, so without the warm-up its figure included all of that (session 13, on an AMD EPYC
// Zen 5: 659 ms for forward+backward against 187 + 227 ms for the two measured apart).
double fwd_flops(int size) { return pld::cpu::PreLnLayer<float>::forward_flops(config_of(size), kBatch, kSeq); }

void BM_LayerForward(benchmark::State& state) {
  if (!runnable(state)) return;
  const int size = static_cast<int>(state.range(0));
  Fixture f(size, precision_of(state));
  f.forward();  // warm-up (see fwd_flops)
  for (auto _ : state) {
    f.forward();
    benchmark::DoNotOptimize(f.y.data());
  }
  set_counters(state, fwd_flops(size), f.layer.gemm().last_implementation());
}

void BM_LayerBackward(benchmark::State& state) {
  if (!runnable(state)) return;
  const int size = static_cast<int>(state.range(0));
  Fixture f(size, precision_of(state));
  f.forward();
  f.backward();  // warm-up (see fwd_flops)
  for (auto _ : state) {
    f.backward();  // gradients accumulate; the saved activations are reused
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, 2 * fwd_flops(size));
}

void BM_LayerForwardBackward(benchmark::State& state) {
  if (!runnable(state)) return;
  const int size = static_cast<int>(state.range(0));
  Fixture f(size, precision_of(state));
  f.forward();  // warm-up (see fwd_flops)
  f.backward();
  for (auto _ : state) {
    f.forward();
    f.backward();
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, 3 * fwd_flops(size));
}

void BM_LayerDropped(benchmark::State& state) {
  if (!runnable(state)) return;
  const int size = static_cast<int>(state.range(0));
  Fixture f(size, precision_of(state));
  f.step.kept = false;
  f.forward();  // warm-up (see fwd_flops)
  f.backward();
  for (auto _ : state) {
    f.forward();
    f.backward();
    benchmark::DoNotOptimize(f.dx.data());
  }
  set_counters(state, 0.0);
}

// The layer logic shared with the GPU on the CPU backend, with its workspace allocated once.
// bf16 (range 1) 1: float storage, bf16 products (PreLnLayer's bf16); 2: bf16 storage (the
// activations, parameters and operands in bf16, no conversion before a product).
template <class T>
void shared_forward_backward(benchmark::State& state) {
  const int size = static_cast<int>(state.range(0));
  const pld::cpu::Precision precision = state.range(1) == 1 ? pld::cpu::Precision::bf16 : pld::cpu::Precision::fp32;
  Fixture f(size, precision);  // its inputs and parameters
  pld::cpu::SharedPreLnLayer<T> layer(config_of(size), precision);
  auto dst = layer.params().tensors();
  auto src = f.layer.params().tensors();
  for (std::size_t i = 0; i < dst.size(); ++i)
    for (std::size_t e = 0; e < dst[i].size; ++e) static_cast<T*>(dst[i].data)[e] = T(static_cast<const float*>(src[i].data)[e]);
  std::vector<T> x(f.x.begin(), f.x.end()), y(f.y.size()), dy(f.dy.begin(), f.dy.end()), dx(f.dx.size());
  const auto sizes = layer.workspace_sizes(kBatch, kSeq, f.step);
  pld::cpu::AlignedBuffer saved, scratch;
  saved.resize(sizes.saved);
  scratch.resize(sizes.scratch);
  const pld::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
  layer.forward(x.data(), y.data(), kBatch, kSeq, nullptr, f.step, ws, {});  // warm-up (see fwd_flops)
  layer.backward(dy.data(), dx.data(), ws, {});
  for (auto _ : state) {
    ++f.step.step;
    layer.forward(x.data(), y.data(), kBatch, kSeq, nullptr, f.step, ws, {});
    layer.backward(dy.data(), dx.data(), ws, {});
    benchmark::DoNotOptimize(dx.data());
  }
  const char* mode[] = {"fp32", "bf16", "bf16-storage"};
  state.SetLabel(std::string(kSizes[size].name) + " " + mode[state.range(1)] + " " + layer.handle().last_implementation());
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(kBatch) * kSeq, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["GFLOP/s"] = benchmark::Counter(3 * fwd_flops(size) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_SharedLayerForwardBackward(benchmark::State& state) {
  if (state.range(1) > 0 && !bf16_runnable(state)) return;
  if (state.range(1) == 2) shared_forward_backward<pld::cpu::bf16>(state);
  else shared_forward_backward<float>(state);
}

// The ceiling: the layer's largest GEMM, (B*T, H) x (4H, H)^T, one oneDNN matmul with its operands
// already in the precision (Eigen's product without oneDNN).
void BM_GemmCeiling(benchmark::State& state) {
  if (!runnable(state)) return;
  const int size = static_cast<int>(state.range(0));
  const int M = kBatch * kSeq, K = kSizes[size].hidden, N = 4 * K;
  std::string impl;
#if defined(PLD_HAS_ONEDNN)
  using dt = dnnl::memory::data_type;
  const dt in = precision_of(state) == pld::cpu::Precision::bf16 ? dt::bf16 : dt::f32;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream s(eng);
  const dnnl::memory::desc a_md({M, K}, in, dnnl::memory::dims{K, 1}), b_md({K, N}, in, dnnl::memory::dims{1, K}),
      c_md({M, N}, dt::f32, dnnl::memory::dims{N, 1});
  const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);
  dnnl::matmul mm(pd);
  dnnl::memory a(a_md, eng), b(b_md, eng), c(c_md, eng);
  std::memset(a.get_data_handle(), 0x3c, a_md.get_size());  // finite, non-zero operands in either type
  std::memset(b.get_data_handle(), 0x3c, b_md.get_size());
  impl = pd.impl_info_str();
  mm.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});  // warm-up (see fwd_flops)
  s.wait();
  for (auto _ : state) {
    mm.execute(s, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
    s.wait();
  }
#else
  pld::cpu::MatrixR<float> a = pld::cpu::MatrixR<float>::Random(M, K), b = pld::cpu::MatrixR<float>::Random(N, K), c(M, N);
  impl = "eigen";
  for (auto _ : state) {
    c.noalias() = a * b.transpose();
    benchmark::DoNotOptimize(c.data());
  }
#endif
  state.SetLabel(std::string(kSizes[size].name) + " " + pld::cpu::to_string(precision_of(state)) + " " + impl);
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * M * K * N * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void sizes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"size", "bf16"});
  for (int p : {0, 1})
    for (int s : {0, 1, 2}) b->Args({s, p});
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
// The shared layer adds bf16 storage (bf16:2).
void shared_sizes(benchmark::internal::Benchmark* b) {
  sizes(b);
  for (int s : {0, 1, 2}) b->Args({s, 2});
}

}  // namespace

BENCHMARK(BM_GemmCeiling)->Apply(sizes);
BENCHMARK(BM_LayerForward)->Apply(sizes);
BENCHMARK(BM_LayerBackward)->Apply(sizes);
BENCHMARK(BM_LayerForwardBackward)->Apply(sizes);
BENCHMARK(BM_LayerDropped)->Apply(sizes);
BENCHMARK(BM_SharedLayerForwardBackward)->Apply(shared_sizes);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("pld_cpu_isa", pld::cpu::cpu_isa_name());
  benchmark::AddCustomContext("pld_engine", pld::cpu::has_onednn() ? "oneDNN" : "Eigen");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
