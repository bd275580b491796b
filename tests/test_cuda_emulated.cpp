// The CUDA layer's logic (pld::cuda::BasicPreLnLayer: buffers, GEMM problems and operand order,
// dropout keys, per-sample gathers, storage rounding points) run by the host emulation of its
// kernels and products (tests/cuda/host_backend.hpp), against pld::cpu::PreLnLayer<double> on the
// same rounded weights and inputs. Runs in CI without a GPU; the GPU tests (tests/cuda/) check
// the real kernels the same way.
//
// Tolerances (relative L2 error per tensor), the GPU tests' bounds: fp32 1e-4, fp16 5e-3,
// bf16 3e-2. The emulation rounds where the kernels round, so its errors are an estimate of the
// GPU layer's (cuBLASLt's summation order and the device's exp/erf differ in the last bits).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/host_backend.hpp"
#include "pld/cpu.hpp"
#include "pld/cuda/basic_pre_ln_layer.hpp"

namespace pc = pld::cuda;
using pld::LayerConfig;
using pld::LayerStep;

namespace {

template <class T>
using EmulatedLayer = pc::BasicPreLnLayer<T, pld::test::HostBackend<T>>;

template <class T>
double bound() {
  if (std::is_same<T, float>::value) return 1e-4;
  if (std::is_same<T, pc::fp16>::value) return 5e-3;
  return 3e-2;
}

template <class T>
std::vector<double> rounded(std::vector<double> v) {
  for (auto& e : v) e = pc::to_float(pc::from_float<T>(static_cast<float>(e)));
  return v;
}

double rel_error(const std::vector<double>& a, const std::vector<double>& ref, std::size_t& non_finite) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) ++non_finite;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

struct Case {
  LayerConfig config;
  int batch = 3, seq = 16;
  bool padding = false, training = true;
  std::vector<std::uint8_t> rows;
  std::uint64_t seed = 1;
};

LayerConfig config64() {
  LayerConfig c;
  c.hidden = 32;
  c.heads = 4;
  c.attention_dropout = 0.1f;
  c.hidden_dropout = 0.1f;
  return c;
}

// Returns the worst relative error over y, dx and the twelve gradients.
template <class T>
double run_case(const Case& k) {
  const LayerConfig& c = k.config;
  const int B = k.batch, S = k.seq;
  const std::size_t n = static_cast<std::size_t>(B) * S * c.hidden;
  pld::cpu::PreLnLayer<double> ref(c);
  std::uint32_t id = 0;
  for (auto& t : ref.params().tensors()) {
    std::vector<double> v(t.size);
    const double sd = t.shape.size() == 2 ? 1.0 / std::sqrt(static_cast<double>(t.shape[1])) : 0.1;
    pld::cpu::fill_normal(v, k.seed, 1, 100 + id++, sd);
    if (t.name.find("norm") != std::string::npos && t.name.find("weight") != std::string::npos)
      for (auto& e : v) e += 1.0;
    v = rounded<T>(v);
    std::memcpy(t.data, v.data(), v.size() * sizeof(double));
  }
  std::vector<double> x(n), dy(n);
  pld::cpu::fill_normal(x, k.seed, 1, 1, 1.0);
  pld::cpu::fill_normal(dy, k.seed, 1, 2, 1.0);
  x = rounded<T>(x);
  dy = rounded<T>(dy);
  std::vector<std::uint8_t> valid;
  if (k.padding) {
    valid.assign(static_cast<std::size_t>(B) * S, 1);
    for (int b = 0; b < B; ++b)
      for (int t = S - (b * 5) % S; t < S; ++t) valid[static_cast<std::size_t>(b) * S + t] = 0;
  }
  LayerStep step;
  step.scale = 1.0 / 0.7;
  step.training = k.training;
  step.seed = 0xbeefULL + k.seed;
  step.step = 9;
  step.layer = 2;
  if (!k.rows.empty()) step.rows = k.rows.data();
  const std::uint8_t* vmask = valid.empty() ? nullptr : valid.data();

  std::vector<double> y_ref(n), dx_ref(n);
  ref.forward(x.data(), y_ref.data(), B, S, vmask, step);
  ref.backward(dy.data(), dx_ref.data());

  EmulatedLayer<T> layer(c);
  layer.params().upload(ref.params(), nullptr);
  layer.grads().zero(nullptr);
  std::vector<T> xs(n), dys(n), ys(n, pc::from_float<T>(NAN)), dxs(n, pc::from_float<T>(NAN));
  for (std::size_t i = 0; i < n; ++i) {
    xs[i] = pc::from_float<T>(static_cast<float>(x[i]));
    dys[i] = pc::from_float<T>(static_cast<float>(dy[i]));
  }
  const auto sizes = layer.workspace_sizes(B, S, step);
  pld::test::AlignedBytes saved(sizes.saved, 0xFF), scratch(sizes.scratch, 0xFF);  // poisoned: NaN in every type
  const pc::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
  layer.forward(xs.data(), ys.data(), B, S, vmask, step, ws, nullptr);
  layer.backward(dys.data(), dxs.data(), ws, nullptr);

  auto widen = [](const std::vector<T>& v) {
    std::vector<double> r(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) r[i] = pc::to_float(v[i]);
    return r;
  };
  std::size_t bad = 0;
  double worst = rel_error(widen(ys), y_ref, bad);
  std::string at = "y";
  const double e_dx = rel_error(widen(dxs), dx_ref, bad);
  if (e_dx > worst) worst = e_dx, at = "dx";
  pld::cpu::LayerParams<double> grads(c);
  layer.grads().download(grads, nullptr);
  auto g = grads.tensors();
  auto r = ref.grads().tensors();
  for (std::size_t i = 0; i < g.size(); ++i) {
    const auto* gp = static_cast<const double*>(g[i].data);
    const auto* rp = static_cast<const double*>(r[i].data);
    const double e = rel_error(std::vector<double>(gp, gp + g[i].size), std::vector<double>(rp, rp + r[i].size), bad);
    if (std::getenv("PLD_EMULATED_VERBOSE")) {
      std::printf("  %s %.3e:", g[i].name.c_str(), e);
      for (int q = 0; q < 4; ++q) std::printf(" %.5f/%.5f", gp[q], rp[q]);
      std::printf("\n");
    }
    if (e > worst) worst = e, at = g[i].name;
  }
  std::printf("emulated %s B %d T %d H %d F %d: worst relative error %.3e (%s)\n", pc::Storage<T>::name, B, S, c.hidden,
              c.ffn_size(), worst, at.c_str());
  INFO("storage " << pc::Storage<T>::name << ": worst relative L2 error " << worst << " in " << at << ", non-finite " << bad);
  CHECK(bad == 0);
  CHECK(worst <= bound<T>());
  return worst;
}

}  // namespace

TEMPLATE_TEST_CASE("Emulated CUDA layer logic matches the CPU layer", "[cuda-host][emulated]", float, pc::bf16, pc::fp16) {
  Case k;
  k.config = config64();
  SECTION("kept, dropout on") { run_case<TestType>(k); }
  SECTION("padding, evaluation") {
    k.padding = true;
    k.training = false;
    run_case<TestType>(k);
  }
  SECTION("per-sample rows, padding, dropout") {
    k.batch = 4;
    k.padding = true;
    k.rows = {0, 1, 1, 0};
    run_case<TestType>(k);
  }
  SECTION("tanh GELU through the epilogue path") {
    k.config.gelu = pld::GeluForm::tanh;
    run_case<TestType>(k);
  }
  SECTION("odd shapes: F % 8 != 0, T % 4 != 0, eps 1e-12") {
    k.config.hidden = 24;
    k.config.heads = 3;
    k.config.ffn = 50;
    k.config.ln_eps = 1e-12;
    k.batch = 2;
    k.seq = 37;
    k.padding = true;
    run_case<TestType>(k);
  }
}

TEST_CASE("Emulated CUDA layer: the comparison is not vacuous", "[cuda-host][emulated]") {
  // The comparison is not vacuous: perturbing one parameter after upload moves the error far
  // past the fp32 bound.
  Case k;
  k.config = config64();
  const LayerConfig& c = k.config;
  pld::cpu::PreLnLayer<double> ref(c);
  ref.params().init_normal(3, 0.2);
  EmulatedLayer<float> layer(c);
  layer.params().upload(ref.params(), nullptr);
  layer.params().get(pc::ParamId::out_proj_weight)[5] += 0.5f;
  const int B = 2, S = 8;
  const std::size_t n = static_cast<std::size_t>(B) * S * c.hidden;
  std::vector<double> x(n), y_ref(n);
  pld::cpu::fill_normal(x, 4, 1, 1, 1.0);
  LayerStep step;
  step.training = false;
  ref.forward(x.data(), y_ref.data(), B, S, nullptr, step);
  std::vector<float> xs(x.begin(), x.end()), ys(n);
  const auto sizes = layer.workspace_sizes(B, S, step);
  pld::test::AlignedBytes saved(sizes.saved), scratch(sizes.scratch);
  layer.forward(xs.data(), ys.data(), B, S, nullptr, step, pc::Workspace{saved.data(), sizes.saved, scratch.data(), sizes.scratch}, nullptr);
  std::size_t bad = 0;
  CHECK(rel_error(std::vector<double>(ys.begin(), ys.end()), y_ref, bad) > 1e-3);
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
