// The layer logic written once for every backend (pld::BasicPreLnLayer, pld/layer/) on the CPU
// backend (pld::cpu::LayerBackend: pld::cpu's Gemm, LayerNorm, GELU and Philox dropout), against
// pld::cpu::PreLnLayer<double> on the same rounded weights and inputs, with the harness the GPU
// and the emulators use (tests/layer/layer_case.hpp, stack_case.hpp). No CUDA header here.
//
// Bounds (relative L2 per tensor): double storage 1e-12 (the same arithmetic as the reference in
// another order), float 2e-5 (the GPU's fp32 bound), bf16 products and bf16 storage 1.5e-2 (the
// GPU's bf16 bound).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "layer/layer_case.hpp"
#include "layer/stack_case.hpp"
#include "pld/cpu.hpp"
#include "pld/cpu/layer_backend.hpp"
#include "pld/gate/gate.hpp"
#include "pld/schedule/presets.hpp"

using pld::LayerConfig;
using pld::LayerStep;
using pld::test::LayerCase;
using pld::test::LayerInputs;
using pld::test::LayerOutputs;
namespace pcpu = pld::cpu;

namespace {

// 256-byte aligned host memory filled with NaN-producing bytes: what the layer must not read.
class Poisoned {
 public:
  explicit Poisoned(std::size_t bytes) { buf_.resize(bytes); std::memset(buf_.data(), 0xFF, bytes); }
  void* data() const { return buf_.data(); }
  std::size_t size() const { return buf_.bytes(); }

 private:
  pcpu::AlignedBuffer buf_;
};

template <class T>
void set_params(pcpu::LayerParams<T>& dst, pcpu::LayerParams<double>& src) {
  auto d = dst.tensors();
  auto s = src.tensors();
  for (std::size_t i = 0; i < d.size(); ++i)
    for (std::size_t e = 0; e < d[i].size; ++e)
      static_cast<T*>(d[i].data)[e] = pld::test::TestStorage<T>::from_double(static_cast<const double*>(s[i].data)[e]);
}

template <class T>
void get_params(pcpu::LayerParams<double>& dst, pcpu::LayerParams<T>& src) {
  auto d = dst.tensors();
  auto s = src.tensors();
  for (std::size_t i = 0; i < d.size(); ++i)
    for (std::size_t e = 0; e < d[i].size; ++e) static_cast<double*>(d[i].data)[e] = static_cast<double>(static_cast<const T*>(s[i].data)[e]);
}

// One forward and backward of the shared layer on the CPU backend, outputs and workspace poisoned.
template <class T>
LayerOutputs run_shared_layer(const LayerCase& k, const LayerInputs& in, pcpu::Precision precision = pcpu::Precision::fp32) {
  const LayerConfig& c = k.config;
  pcpu::SharedPreLnLayer<T> layer(c, precision);
  pcpu::LayerParams<double> params = in.params;
  set_params(layer.params(), params);
  std::vector<T> xs = pld::test::to_storage<T>(in.x), dys = pld::test::to_storage<T>(in.dy);
  std::vector<T> ys(xs.size(), T(static_cast<float>(NAN))), dxs(xs.size(), T(static_cast<float>(NAN)));
  const auto sizes = layer.workspace_sizes(k.batch, k.seq, in.step);
  Poisoned saved(sizes.saved), scratch(sizes.scratch);
  const pld::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
  layer.forward(xs.data(), ys.data(), k.batch, k.seq, in.valid.empty() ? nullptr : in.valid.data(), in.step, ws, {});
  layer.backward(dys.data(), dxs.data(), ws, {});
  LayerOutputs out(c);
  out.y = pld::test::from_storage(ys);
  out.dx = pld::test::from_storage(dxs);
  get_params(out.grads, layer.grads());
  return out;
}

template <class T>
double run_case(const LayerCase& k) {
  return pld::test::check_layer_case<T>(k, [&](const LayerInputs& in) { return run_shared_layer<T>(k, in); }, "cpu-shared");
}

LayerConfig config32() { return pld::test::test_config(32, 4); }

}  // namespace

TEMPLATE_TEST_CASE("The shared layer logic on the CPU backend matches the CPU layer", "[cpu][shared-layer]", double, float,
                   pcpu::bf16) {
  if (std::is_same<TestType, pcpu::bf16>::value && !pcpu::has_onednn()) {
    CHECK_THROWS_WITH(pcpu::SharedPreLnLayer<pcpu::bf16>::workspace_sizes(config32(), 2, 8, LayerStep{}), Catch::Matchers::Contains("oneDNN"));
    return;
  }
  for (const auto& [name, k] : pld::test::standard_layer_cases(config32()))
    DYNAMIC_SECTION(name) { run_case<TestType>(k); }
}

TEST_CASE("The shared layer on the CPU backend with bf16 products", "[cpu][shared-layer]") {
  if (!pcpu::has_onednn()) {
    CHECK_THROWS_WITH(pcpu::SharedPreLnLayer<float>(config32(), pcpu::Precision::bf16), Catch::Matchers::Contains("need oneDNN"));
    return;
  }
  LayerCase k;
  k.config = config32();
  k.padding = true;
  k.tolerance = 1.5e-2;
  pld::test::check_layer_case<float>(
      k, [&](const LayerInputs& in) { return run_shared_layer<float>(k, in, pcpu::Precision::bf16); }, "cpu-shared-bf16");
  pcpu::SharedPreLnLayer<float> layer(k.config, pcpu::Precision::bf16);
  CHECK(layer.handle().precision() == pcpu::Precision::bf16);
}

TEST_CASE("The shared CPU layer: the comparison is not vacuous", "[cpu][shared-layer]") {
  // A different dropout key (another step) moves every tensor far past the double bound: the
  // comparison sees the masks, so agreeing masks are a finding, not an accident.
  LayerCase k;
  k.config = config32();
  const LayerInputs in = pld::test::make_inputs<double>(k);
  LayerInputs other = in;
  other.step.step += 1;
  const LayerOutputs a = run_shared_layer<double>(k, in), b = run_shared_layer<double>(k, other);
  std::size_t bad = 0;
  CHECK(pld::test::rel_error(a.y, b.y, bad) > 1e-3);
  CHECK(pld::test::rel_error(a.dx, b.dx, bad) > 1e-3);
  CHECK(bad == 0);
}

TEST_CASE("The shared CPU layer: a dropped layer does nothing, misuse is one clear error", "[cpu][shared-layer]") {
  const LayerConfig c = config32();
  pcpu::SharedPreLnLayer<float> layer(c);
  LayerStep dropped;
  dropped.kept = false;
  dropped.scale = 0.0;
  const auto none = layer.workspace_sizes(2, 8, dropped);
  CHECK(none.saved == 0);
  CHECK(none.scratch == 0);
  std::vector<float> x(2 * 8 * 32, 1.5f), y(x.size(), 0.0f);
  layer.forward(x.data(), y.data(), 2, 8, nullptr, dropped, pld::Workspace{}, {});
  CHECK(y == x);
  layer.backward(x.data(), y.data(), pld::Workspace{}, {});
  CHECK(layer.launches().kernels == 0);  // the identity: two copies (y != x, dx != dy), nothing else
  CHECK(layer.launches().gemms == 0);
  CHECK(layer.launches().copies == 2);

  LayerStep kept;
  const auto sizes = layer.workspace_sizes(2, 8, kept);
  CHECK_THROWS_WITH(layer.forward(x.data(), y.data(), 2, 8, nullptr, kept, pld::Workspace{}, {}), Catch::Matchers::Contains("workspace too small"));
  Poisoned saved(sizes.saved + 256), scratch(sizes.scratch);
  CHECK_THROWS_WITH(layer.forward(x.data(), y.data(), 2, 8, nullptr, kept,
                                  pld::Workspace{static_cast<char*>(saved.data()) + 16, sizes.saved, scratch.data(), sizes.scratch}, {}),
                    Catch::Matchers::Contains("256-byte aligned"));
  CHECK(layer.launches().total() == 2);  // the refused forwards did nothing
  pcpu::SharedPreLnLayer<float> fresh(c);
  CHECK_THROWS_WITH(fresh.backward(x.data(), y.data(), pld::Workspace{}, {}), Catch::Matchers::Contains("without a forward"));
  CHECK_THROWS_WITH(layer.workspace_sizes(0, 8, kept), Catch::Matchers::Contains("batch must be > 0"));

  // A kept step: 18 products (6 forward, 12 backward) and the passes between them.
  layer.forward(x.data(), y.data(), 2, 8, nullptr, kept, pld::Workspace{saved.data(), sizes.saved, scratch.data(), sizes.scratch}, {});
  layer.backward(x.data(), y.data(), pld::Workspace{saved.data(), sizes.saved, scratch.data(), sizes.scratch}, {});
  CHECK(layer.launches().gemms == 18);
}

namespace {

template <class T>
pld::test::StackOutputs run_shared_stack(const pld::test::StackCase& k, const pld::test::StackInputs& in) {
  pcpu::SharedLayerStack<T> stack(k.config, k.layers);
  for (int l = 0; l < k.layers; ++l) {
    pcpu::LayerParams<double> p = in.params[static_cast<std::size_t>(l)];
    set_params(stack.layer(l).params(), p);
  }
  std::vector<T> x = pld::test::to_storage<T>(in.x), d = pld::test::to_storage<T>(in.dy);
  stack.forward(x.data(), k.batch, k.seq, in.valid.empty() ? nullptr : in.valid.data(), in.plan, in.dropout_seed, {});
  pld::test::StackOutputs out;
  out.y = pld::test::from_storage(x);
  stack.backward(d.data(), {});
  out.dx = pld::test::from_storage(d);
  for (int l = 0; l < k.layers; ++l) {
    out.grads.emplace_back(k.config);
    get_params(out.grads.back(), stack.layer(l).grads());
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("The shared layer stack on the CPU backend matches a stack of CPU layers under PLD plans", "[cpu][shared-layer]",
                   double, float, pcpu::bf16) {
  if (std::is_same<TestType, pcpu::bf16>::value && !pcpu::has_onednn()) return;  // refused: see the single-layer case
  pld::test::StackCase k;
  k.config = config32();
  SECTION("per layer") {}
  SECTION("per sample") { k.granularity = pld::Granularity::sample; }
  SECTION("Post-LN, per layer") { k.config.norm = pld::NormPosition::post; }
  pld::test::check_stack_case<TestType>(k, [&](const pld::test::StackInputs& in) { return run_shared_stack<TestType>(k, in); },
                                        "cpu-shared");
}
