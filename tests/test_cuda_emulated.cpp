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
#include "cuda/layer_case.hpp"
#include "pld/cpu.hpp"
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
  LayerCase k;
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
