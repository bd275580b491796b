// The CUDA layer's logic (pld::cuda::BasicPreLnLayer: buffers, GEMM problems and operand order,
// dropout keys, per-sample gathers, storage rounding points) run by the host emulation of its
// kernels and products (tests/cuda/host_backend.hpp), against pld::cpu::PreLnLayer<double> on the
// same rounded weights and inputs. Runs in CI without a GPU; the GPU tests (tests/cuda/) check
// the real kernels the same way.
//
// Tolerances (relative L2 error per tensor), the GPU tests' bounds (tests/layer/layer_case.hpp): fp32 2e-5,
// fp16 2e-3, bf16 1.5e-2. The emulation rounds where the kernels round, so its errors are an estimate of the
// GPU layer's (cuBLASLt's summation order and the device's exp/erf differ in the last bits).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/host_backend.hpp"
#include "layer/layer_case.hpp"
#include "layer/stack_case.hpp"
#include "pld/cpu.hpp"
#include "pld/cuda/basic_layer_stack.hpp"
#include "pld/cuda/basic_pre_ln_layer.hpp"

namespace pc = pld::cuda;
using pld::LayerConfig;
using pld::LayerStep;

namespace {

template <class T>
using EmulatedLayer = pc::BasicPreLnLayer<T, pld::test::HostBackend<T>>;
using pld::test::LayerCase;
using pld::test::LayerInputs;
using pld::test::LayerOutputs;

LayerConfig config64() { return pld::test::test_config(32, 4); }

// The case on the host emulation, outputs and workspace poisoned (NaN in every storage type).
template <class T>
double run_case(const LayerCase& k) {
  return pld::test::check_layer_case<T>(
      k, [&](const pld::test::LayerInputs& in) { return pld::test::run_host_layer<T, pld::test::HostBackend<T>>(k, in); }, "emulated");
}

}  // namespace

TEMPLATE_TEST_CASE("Emulated CUDA layer logic matches the CPU layer", "[cuda-host][emulated]", float, pc::bf16, pc::fp16) {
  for (const auto& [name, k] : pld::test::standard_layer_cases(config64()))
    DYNAMIC_SECTION(name) { run_case<TestType>(k); }
}

TEST_CASE("Emulated CUDA layer: the comparison is not vacuous", "[cuda-host][emulated]") {
  // The comparison is not vacuous: perturbing one parameter after upload moves the error far
  // past the fp32 bound.
  LayerCase k;
  k.config = config64();
  const LayerConfig& c = k.config;
  pld::cpu::PreLnLayer<double> ref(c);
  ref.params().init_normal(3, 0.2);
  EmulatedLayer<float> layer(c);
  layer.params().upload(ref.params(), nullptr);
  layer.params().get(pc::ParamId::out_proj_weight)[5] += 0.5f;
  const int B = 2, S = 8;
  const std::size_t n = static_cast<std::size_t>(B) * S * c.hidden;
  const std::vector<double> x = pld::test::normals(n, 4, 1, 1.0);
  std::vector<double> y_ref(n);
  LayerStep step;
  step.training = false;
  ref.forward(x.data(), y_ref.data(), B, S, nullptr, step);
  std::vector<float> xs(x.begin(), x.end()), ys(n);
  const auto sizes = layer.workspace_sizes(B, S, step);
  pld::test::AlignedBytes saved(sizes.saved), scratch(sizes.scratch);
  layer.forward(xs.data(), ys.data(), B, S, nullptr, step, pc::Workspace{saved.data(), sizes.saved, scratch.data(), sizes.scratch}, nullptr);
  std::size_t bad = 0;
  CHECK(pld::test::rel_error(std::vector<double>(ys.begin(), ys.end()), y_ref, bad) > 1e-3);
}

TEST_CASE("Emulated CUDA layer: a dropped layer launches nothing", "[cuda-host][emulated]") {
  const LayerConfig c = config64();
  EmulatedLayer<pc::bf16> layer(c);
  LayerStep step;
  step.kept = false;
  step.scale = 0.0;
  const auto sizes = layer.workspace_sizes(2, 8, step);
  CHECK(sizes.saved == 0);
  CHECK(sizes.scratch == 0);
  std::vector<pc::bf16> x(2 * 8 * 32, pc::from_float<pc::bf16>(1.5f));
  layer.forward(x.data(), x.data(), 2, 8, nullptr, step, pc::Workspace{}, nullptr);
  layer.backward(x.data(), x.data(), pc::Workspace{}, nullptr);
  CHECK(layer.launches().total() == 0);
  LayerStep kept;
  pld::test::AlignedBytes saved(layer.workspace_sizes(2, 8, kept).saved), scratch(layer.workspace_sizes(2, 8, kept).scratch);
  std::vector<pc::bf16> y(x.size());
  layer.forward(x.data(), y.data(), 2, 8, nullptr, kept, pc::Workspace{saved.data(), saved.size(), scratch.data(), scratch.size()}, nullptr);
  layer.backward(x.data(), y.data(), pc::Workspace{saved.data(), saved.size(), scratch.data(), scratch.size()}, nullptr);
  CHECK(layer.launches().gemms == 18);
}

TEST_CASE("Emulated CUDA layer: a misaligned workspace is one clear error", "[cuda-host][emulated]") {
  const LayerConfig c = config64();
  EmulatedLayer<float> layer(c);
  LayerStep step;
  const auto sizes = layer.workspace_sizes(2, 8, step);
  pld::test::AlignedBytes saved(sizes.saved + 256), scratch(sizes.scratch);
  std::vector<float> x(2 * 8 * 32, 1.0f);
  CHECK_THROWS_WITH(layer.forward(x.data(), x.data(), 2, 8, nullptr, step,
                                  pc::Workspace{saved.data() + 16, sizes.saved, scratch.data(), sizes.scratch}, nullptr),
                    Catch::Matchers::Contains("256-byte aligned"));
  CHECK(layer.launches().total() == 0);
}

// --- the layer stack (pld::cuda::BasicLayerStack) on the host emulation ----------------------------

namespace {

template <class T>
using EmulatedStack = pc::BasicLayerStack<T, pld::test::HostBackend<T>>;

pld::Schedule preset_schedule(pld::Preset preset, int layers) {
  pld::ScheduleSpec spec;
  spec.preset = preset;
  spec.num_layers = layers;
  return pld::make_schedule(spec);
}

// The stack case on the host emulation: x in place through forward and backward.
template <class T>
pld::test::StackOutputs run_emulated_stack(const pld::test::StackCase& k, const pld::test::StackInputs& in) {
  EmulatedStack<T> stack(k.config, k.layers);
  for (int l = 0; l < k.layers; ++l) {
    pld::cpu::LayerParams<double> p = in.params[static_cast<std::size_t>(l)];
    stack.layer(l).params().upload(p, nullptr);
    stack.layer(l).grads().zero(nullptr);
  }
  std::vector<T> x = pld::test::to_storage<T>(in.x), d = pld::test::to_storage<T>(in.dy);
  stack.forward(x.data(), k.batch, k.seq, in.valid.empty() ? nullptr : in.valid.data(), in.plan, in.dropout_seed, nullptr);
  pld::test::StackOutputs out;
  out.y = pld::test::from_storage(x);
  stack.backward(d.data(), nullptr);
  out.dx = pld::test::from_storage(d);
  for (int l = 0; l < k.layers; ++l) {
    out.grads.emplace_back(k.config);
    stack.layer(l).grads().download(out.grads.back(), nullptr);
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("Emulated CUDA layer stack matches a stack of CPU layers under PLD plans", "[cuda-host][emulated][stack]", float,
                   pc::bf16) {
  pld::test::StackCase k;
  k.config = config64();
  SECTION("per layer") {}
  SECTION("per sample") { k.granularity = pld::Granularity::sample; }
  pld::test::check_stack_case<TestType>(k, [&](const pld::test::StackInputs& in) { return run_emulated_stack<TestType>(k, in); },
                                        "emulated");
}

TEST_CASE("Emulated CUDA layer stack: one arena, dropped layers take nothing, misuse is one clear error", "[cuda-host][emulated][stack]") {
  const LayerConfig c = config64();
  const int L = 6, B = 4, T = 8;
  EmulatedStack<float> stack(c, L);
  stack.reserve(B, T);
  CHECK(stack.allocations() == 1);
  const std::size_t reserved = stack.arena_bytes();
  LayerStep all;
  const auto one = EmulatedLayer<float>::workspace_sizes(c, B, T, all);
  CHECK(reserved >= L * one.saved + one.scratch);

  pld::ScheduleSpec spec;
  spec.preset = pld::Preset::dd_only;
  spec.num_layers = L;
  spec.theta_bar = 0.2;
  for (auto granularity : {pld::Granularity::layer, pld::Granularity::sample}) {
    pld::GateConfig gc;
    gc.seed = 3;
    gc.granularity = granularity;
    const pld::Gate gate(pld::make_schedule(spec), gc);
    std::vector<float> x(static_cast<std::size_t>(B) * T * c.hidden, 0.25f);
    for (std::int64_t step = 1; step <= 12; ++step) {
      const pld::LayerPlan plan = gate.plan(step, true, B);
      const auto before = stack.launches();
      std::vector<std::uint64_t> per_layer;
      for (int l = 0; l < L; ++l) per_layer.push_back(stack.layer(l).launches().total());
      stack.forward(x.data(), B, T, nullptr, plan, 9, nullptr);
      // The saved bytes are the kept layers' (per sample: their kept rows') and nothing more.
      std::size_t expect_saved = 0;
      for (int l = 0; l < L; ++l) {
        const auto s = EmulatedLayer<float>::workspace_sizes(c, B, T, LayerStep::from_plan(plan, l, 9));
        expect_saved += (s.saved + 255) / 256 * 256;
      }
      CHECK(stack.saved_bytes() == expect_saved);
      stack.backward(x.data(), nullptr);
      for (int l = 0; l < L; ++l) {
        const bool any = plan.kept(l);
        INFO("step " << step << " layer " << l);
        if (!any) CHECK(stack.layer(l).launches().total() == per_layer[static_cast<std::size_t>(l)]);  // not one launch
        else CHECK(stack.layer(l).launches().total() > per_layer[static_cast<std::size_t>(l)]);
      }
      CHECK(stack.launches().total() > before.total());
    }
  }
  CHECK(stack.allocations() == 1);  // 24 steps of both granularities inside the reserved arena
  CHECK(stack.arena_bytes() == reserved);

  // A larger batch grows the arena once, before any launch.
  {
    const pld::LayerPlan keep_all = pld::Gate(preset_schedule(pld::Preset::none, L)).plan(1, true, 2 * B);
    std::vector<float> x(static_cast<std::size_t>(2 * B) * T * c.hidden, 0.5f);
    stack.forward(x.data(), 2 * B, T, nullptr, keep_all, 9, nullptr);
    stack.backward(x.data(), nullptr);
    CHECK(stack.allocations() == 2);
  }

  std::vector<float> x(static_cast<std::size_t>(B) * T * c.hidden, 0.5f);
  EmulatedStack<float> fresh(c, L);
  CHECK_THROWS_WITH(fresh.backward(x.data(), nullptr), Catch::Matchers::Contains("without a forward"));
  const pld::LayerPlan wrong = pld::Gate(preset_schedule(pld::Preset::pld, L + 1)).plan(1, true, B);
  CHECK_THROWS_WITH(fresh.forward(x.data(), B, T, nullptr, wrong, 9, nullptr), Catch::Matchers::Contains("the plan has 7 layers, the stack 6"));
  pld::GateConfig per_sample;
  per_sample.granularity = pld::Granularity::sample;
  const pld::LayerPlan rows = pld::Gate(preset_schedule(pld::Preset::pld, L), per_sample).plan(1, true, B + 1);
  CHECK_THROWS_WITH(fresh.forward(x.data(), B, T, nullptr, rows, 9, nullptr), Catch::Matchers::Contains("for 5 rows, the batch has 4"));
  CHECK_THROWS_WITH(EmulatedStack<float>(c, 0), Catch::Matchers::Contains("layers must be in 1..1000"));
  CHECK(fresh.launches().total() == 0);
  CHECK(fresh.allocations() == 0);
}
