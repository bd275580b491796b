// What the CUDA Pre-LN layer costs: forward+backward of one layer at BERT-base (H=768, 12 heads)
// and BERT-large (H=1024, 16 heads), F = 4H, T=128 with B=128 and T=512 with B=32, bf16 and fp16
// storage, training mode (dropout 0.1 on all three sites, as BERT). Measured beside them in the
// same run:
//  - the ceiling: one cuBLASLt bf16 GEMM 8192^3 (fp32 accumulation), through the same GemmPlan;
//  - a dropped layer (gate says skip), forward+backward in place: it should launch nothing.
// Times are CUDA events around each iteration (UseManualTime). Counters: tokens/s (B*T per
// iteration) and TFLOP/s (GEMM FLOPs only, layer_forward_flops x 3 for forward+backward).
// Every case runs a fixed number of iterations (kIterations): with manual time, Google Benchmark
// would otherwise scale a near-zero time (the dropped layer) up to ~10^5 iterations, each
// repetition building a fixture, and never stop if a time read 0. A dropped-layer iteration
// times kDroppedSteps steps between two events and reports the time of one.
// Also a BERT-base stack of 12 layers under PLD plans (BM_Stack, below): realised vs ideal speedup.
// benchmarks/cuda_layer_table.py turns the JSON (with the PyTorch peer's) into the ratio table.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <string>
#include <vector>

#include "pld/cpu/layer_params.hpp"
#include "pld/cuda.hpp"

namespace pc = pld::cuda;

namespace {

constexpr int kIterations = 20;     // per repetition, every case
constexpr int kDroppedSteps = 100;  // steps per timed iteration of a dropped layer

struct Model {
  const char* name;
  int hidden, heads;
};
constexpr Model kModels[] = {{"base", 768, 12}, {"large", 1024, 16}};

pld::LayerConfig config_of(int model) {
  pld::LayerConfig c;
  c.hidden = kModels[model].hidden;
  c.heads = kModels[model].heads;
  c.ln_eps = 1e-12;
  c.gelu = pld::GeluForm::tanh;  // cuBLASLt's GELU epilogue; the erf form adds one kernel each way
  c.attention_dropout = 0.1f;
  c.hidden_dropout = 0.1f;
  return c;
}

template <class T>
struct Fixture {
  pld::LayerConfig config;
  int batch, seq;
  pc::Stream stream;
  pc::PreLnLayer<T> layer;
  pc::DeviceArray<T> x, dy, y, dx;
  pc::DeviceBuffer saved, scratch;
  pld::LayerStep step;

  Fixture(int model, int seq_, int batch_, bool kept)
      : config(config_of(model)), batch(batch_), seq(seq_), layer(config),
        x(static_cast<std::size_t>(batch_) * seq_ * config.hidden), dy(x.size()), y(x.size()), dx(x.size()) {
    pld::cpu::LayerParams<float> host(config);
    host.init_normal(1);
    layer.params().upload(host, stream.get());
    // Random-looking inputs, not zeros (zeros can run faster than real data).
    std::vector<T> h(x.size());
    for (std::size_t i = 0; i < h.size(); ++i)
      h[i] = pc::from_float<T>(static_cast<float>(pld::uniform01(7, 0, pld::RandomStream::param_init, 200, static_cast<std::uint32_t>(i))) - 0.5f);
    pc::copy_to_device(x.data(), h.data(), h.size(), stream.get());
    pc::copy_to_device(dy.data(), h.data(), h.size(), stream.get());
    stream.synchronize();
    step.kept = kept;
    step.scale = kept ? 1.0 / 0.75 : 0.0;
    step.seed = 1;
    const auto sz = layer.workspace_sizes(batch, seq, step);
    saved.resize(sz.saved);
    scratch.resize(sz.scratch);
  }
  pc::Workspace ws() const { return pc::Workspace{saved.data(), saved.bytes(), scratch.data(), scratch.bytes()}; }
  // Kept: out of place, so every iteration sees the same inputs. Dropped: in place, as in a
  // stack, where the identity then costs nothing at all.
  void step_once() {
    ++step.step;
    T* out = step.kept ? y.data() : x.data();
    T* din = step.kept ? dx.data() : dy.data();
    layer.forward(x.data(), out, batch, seq, nullptr, step, ws(), stream.get());
    layer.backward(dy.data(), din, ws(), stream.get());
  }
};

template <class T>
void BM_Layer(benchmark::State& state) {
  const int model = static_cast<int>(state.range(0)), seq = static_cast<int>(state.range(1)),
            batch = static_cast<int>(state.range(2));
  const bool kept = state.range(3) != 0;
  Fixture<T> f(model, seq, batch, kept);
  for (int i = 0; i < 3; ++i) f.step_once();  // warm-up: GEMM plans, module load
  f.stream.synchronize();
  pc::Event start, stop;
  const auto before = f.layer.launches();
  std::int64_t steps = 0;
  const int per_iteration = kept ? 1 : kDroppedSteps;
  for (auto _ : state) {
    start.record(f.stream.get());
    for (int i = 0; i < per_iteration; ++i) f.step_once();
    stop.record(f.stream.get());
    stop.synchronize();
    state.SetIterationTime(static_cast<double>(stop.elapsed_ms_since(start)) * 1e-3 / per_iteration);
    steps += per_iteration;
  }
  const auto after = f.layer.launches();
  state.SetLabel(std::string(kModels[model].name) + " " + pc::Storage<T>::name + (kept ? " kept" : " dropped"));
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(batch) * seq, benchmark::Counter::kIsIterationInvariantRate);
  const double flops = kept ? 3.0 * pld::layer_forward_flops(f.config, batch, seq) : 0.0;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["launches/step"] = steps > 0 ? static_cast<double>(after.total() - before.total()) / static_cast<double>(steps) : 0.0;
}

void BM_GemmCeiling(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  pc::Stream stream;
  pc::LtHandle lt;
  pc::GemmProblem p = pc::row_major_linear(n, n, n, CUDA_R_16BF, CUBLAS_COMPUTE_32F);
  pc::GemmPlan plan(lt, p);
  const std::size_t elems = static_cast<std::size_t>(n) * n;
  pc::DeviceArray<pc::bf16> a(elems), b(elems), d(elems);
  pc::DeviceBuffer ws(pc::kLtWorkspaceBytes);
  std::vector<pc::bf16> h(elems);
  for (std::size_t i = 0; i < elems; ++i) h[i] = pc::from_float<pc::bf16>(static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f);
  pc::copy_to_device(a.data(), h.data(), elems, stream.get());
  pc::copy_to_device(b.data(), h.data(), elems, stream.get());
  for (int i = 0; i < 3; ++i) plan.run(lt, 1.0f, a.data(), b.data(), 0.0f, d.data(), nullptr, nullptr, ws.data(), stream.get());
  stream.synchronize();
  pc::Event start, stop;
  for (auto _ : state) {
    start.record(stream.get());
    plan.run(lt, 1.0f, a.data(), b.data(), 0.0f, d.data(), nullptr, nullptr, ws.data(), stream.get());
    stop.record(stream.get());
    stop.synchronize();
    state.SetIterationTime(static_cast<double>(stop.elapsed_ms_since(start)) * 1e-3);
  }
  state.SetLabel("cuBLASLt bf16 GEMM");
  state.counters["TFLOP/s"] = benchmark::Counter(2.0 * n * static_cast<double>(n) * n * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

// A BERT-base encoder stack (12 layers, T=128, B=128, bf16) under the plans of pld's gate:
// mode 0 keeps every layer (none), 1 is PLD per layer, 2 PLD per sample, both at theta = 0.5 (the
// schedule's floor, where a long run spends most of its steps: dd_only, Bernoulli draws). Each
// iteration is one forward+backward with the next plan of a fixed sequence of 64 steps (after a
// warm-up pass over all of them); the
// counter `kept` is the fraction of layer-rows the timed steps ran, so realised speedup
// (none's time over PLD's) can be set against the ideal, 1 / kept, in the same run. With
// optimizer:1 a step is a training step of the stack: StackAdamW after the backward, the dropped
// layers' tensors skipped (fp32 master weights and moments, the bf16 copies rewritten).
constexpr int kStackLayers = 12;

void BM_Stack(benchmark::State& state) {
  const int mode = static_cast<int>(state.range(0));
  const bool with_optimizer = state.range(1) != 0;  // a training step: AdamW after the backward
  const int seq = 128, batch = 128;
  const pld::LayerConfig config = config_of(0);
  pc::Stream stream;
  pc::LayerStack<pc::bf16> stack(config, kStackLayers);
  pld::cpu::LayerParams<float> host(config);
  for (int l = 0; l < kStackLayers; ++l) {
    host.init_normal(static_cast<std::uint64_t>(l + 1));
    stack.layer(l).params().upload(host, stream.get());
  }
  stack.reserve(batch, seq);
  pc::OptimizerHyper hyper;
  hyper.lr = 1e-4f;
  pc::StackAdamW<pc::bf16> opt(stack, hyper, 0.01f);
  if (with_optimizer)
    for (int l = 0; l < kStackLayers; ++l) {
      host.init_normal(static_cast<std::uint64_t>(l + 1));
      opt.upload(l, host, stream.get());
    }
  const std::size_t n = static_cast<std::size_t>(batch) * seq * config.hidden;
  pc::DeviceArray<pc::bf16> x0(n), x(n), dx(n);
  {
    std::vector<pc::bf16> h(n);
    for (std::size_t i = 0; i < n; ++i)
      h[i] = pc::from_float<pc::bf16>(static_cast<float>(pld::uniform01(7, 0, pld::RandomStream::param_init, 201, static_cast<std::uint32_t>(i))) - 0.5f);
    pc::copy_to_device(x0.data(), h.data(), n, stream.get());
    stream.synchronize();
  }
  pld::ScheduleSpec spec;
  spec.preset = mode == 0 ? pld::Preset::none : pld::Preset::dd_only;
  spec.num_layers = kStackLayers;
  spec.theta_bar = 0.5;
  pld::GateConfig gc;
  gc.seed = 11;
  gc.granularity = mode == 2 ? pld::Granularity::sample : pld::Granularity::layer;
  const pld::Gate gate(pld::make_schedule(spec), gc);
  std::vector<pld::LayerPlan> plans;
  for (int s = 0; s < 64; ++s) plans.push_back(gate.plan(s + 1, true, batch));
  auto kept_rows = [&](const pld::LayerPlan& p) {
    std::int64_t k = 0;
    for (int l = 0; l < kStackLayers; ++l) k += p.per_sample() ? static_cast<std::int64_t>(p.kept_rows(l).size()) : (p.kept(l) ? batch : 0);
    return k;
  };
  std::size_t next = 0;
  auto step = [&]() {
    const pld::LayerPlan& p = plans[next++ % plans.size()];
    // The stack runs in place: fresh input and output gradient from device memory (~25 us).
    pc::check(cudaMemcpyAsync(x.data(), x0.data(), n * sizeof(pc::bf16), cudaMemcpyDeviceToDevice, stream.get()), "copy x");
    pc::check(cudaMemcpyAsync(dx.data(), x0.data(), n * sizeof(pc::bf16), cudaMemcpyDeviceToDevice, stream.get()), "copy dx");
    stack.forward(x.data(), batch, seq, nullptr, p, 5, stream.get());
    stack.backward(dx.data(), stream.get());
    if (with_optimizer) opt.step(p, /*skip_dropped=*/true, stream.get());
    return kept_rows(p);
  };
  // Warm-up: one pass over the 64 plans, so every GEMM shape they need (per sample: one per
  // kept-row count) is planned before the timing, as it would be early in a long run.
  for (std::size_t i = 0; i < plans.size(); ++i) step();
  stream.synchronize();
  next = 0;
  pc::Event start, stop;
  std::int64_t kept = 0, steps = 0;
  const auto before = stack.launches();
  for (auto _ : state) {
    start.record(stream.get());
    kept += step();
    stop.record(stream.get());
    stop.synchronize();
    state.SetIterationTime(static_cast<double>(stop.elapsed_ms_since(start)) * 1e-3);
    ++steps;
  }
  const double fraction = static_cast<double>(kept) / (static_cast<double>(steps) * kStackLayers * batch);
  state.SetLabel(std::string("base x12 bf16 ") + (mode == 0 ? "none" : mode == 1 ? "pld per layer" : "pld per sample") +
                 (with_optimizer ? " + AdamW" : ""));
  state.counters["kept"] = fraction;
  state.counters["allocations"] = static_cast<double>(stack.allocations());
  state.counters["launches/step"] = static_cast<double>(stack.launches().total() - before.total()) / static_cast<double>(steps);
  const double flops = 3.0 * pld::layer_forward_flops(config, batch, seq) * kStackLayers * fraction;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
}

void layer_args(benchmark::internal::Benchmark* b) {
  b->ArgNames({"model", "T", "B", "kept"});
  for (int model = 0; model < 2; ++model)
    for (auto [seq, batch] : {std::pair<int, int>{128, 128}, std::pair<int, int>{512, 32}})
      for (int kept : {1, 0}) b->Args({model, seq, batch, kept});
  b->UseManualTime()->Iterations(kIterations)->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_GemmCeiling)->Arg(8192)->ArgName("n")->UseManualTime()->Iterations(kIterations)->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(BM_Layer, pc::bf16)->Apply(layer_args);
BENCHMARK_TEMPLATE(BM_Layer, pc::fp16)->Apply(layer_args);
BENCHMARK(BM_Stack)
    ->ArgNames({"mode", "optimizer"})
    ->Args({0, 0})->Args({1, 0})->Args({2, 0})->Args({0, 1})->Args({1, 1})
    ->UseManualTime()->Iterations(kIterations)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  bool listing = false;  // --benchmark_list_tests runs nothing: allowed without a device (CTest checks the names)
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    listing = listing || a == "--benchmark_list_tests" || a == "--benchmark_list_tests=true";
  }
  benchmark::Initialize(&argc, argv);  // flags first, so a bad one shows on any machine
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  if (!listing && pc::device_count() == 0) {
    std::fprintf(stderr, "bench_cuda_layer: no CUDA device: nothing to measure\n");
    return 77;
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
