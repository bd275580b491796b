// The CUDA Pre-LN layer against the CPU layer in double on identical weights and inputs (the
// Eigen run_and_compare_to_gpu habit): output, input gradient and all twelve parameter gradients,
// kept and dropped, with and without padding, dropout on and off, per-sample mode, both GELU
// paths (cuBLASLt epilogue and pld's kernel), fp32 / bf16 / fp16 storage. Inputs are fresh random
// numbers per case; outputs and workspace are poisoned (all bits set: NaN in every storage type)
// before each run, so an element nothing wrote fails the comparison.
//
// The comparison and its tolerance rule are tests/layer/layer_case.hpp's, shared with the host
// emulation that runs in CI. The bounds were stated before any GPU run; a run that needs them
// loosened must say so in docs/cuda_layer.md.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "../layer/layer_case.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/cuda.hpp"

namespace pc = pld::cuda;
using pld::LayerConfig;
using pld::LayerStep;

namespace {

using pld::test::LayerCase;
using pld::test::LayerInputs;
using pld::test::LayerOutputs;
using pld::test::from_storage;
using pld::test::to_storage;

using pld::test::normals;

LayerConfig base_config() { return pld::test::test_config(64, 4); }

// The case on the GPU in storage T: outputs and workspace poisoned (all bits set: NaN in every
// storage type) before the run, so an element nothing wrote fails the comparison.
template <class T>
void run_case(const LayerCase& k) {
  pld::test::check_layer_case<T>(k, [&](const LayerInputs& in) {
    const LayerConfig& c = k.config;
    const std::size_t n = in.x.size();
    pc::Stream stream;
    cudaStream_t st = stream.get();
    pc::PreLnLayer<T> layer(c);
    pld::cpu::LayerParams<double> params = in.params;
    layer.params().upload(params, st);
    layer.grads().zero(st);
    auto d_x = pc::to_device(to_storage<T>(in.x), st);
    auto d_dy = pc::to_device(to_storage<T>(in.dy), st);
    pc::DeviceArray<T> d_y(n), d_dx(n);
    pc::check(cudaMemsetAsync(d_y.data(), 0xFF, n * sizeof(T), st), "poison y");
    pc::check(cudaMemsetAsync(d_dx.data(), 0xFF, n * sizeof(T), st), "poison dx");
    pc::DeviceArray<std::uint8_t> d_valid;
    if (!in.valid.empty()) d_valid = pc::to_device(in.valid, st);
    const auto sizes = layer.workspace_sizes(k.batch, k.seq, in.step);
    pc::DeviceBuffer saved(sizes.saved), scratch(sizes.scratch);
    if (sizes.saved) pc::check(cudaMemsetAsync(saved.data(), 0xFF, sizes.saved, st), "poison saved");
    if (sizes.scratch) pc::check(cudaMemsetAsync(scratch.data(), 0xFF, sizes.scratch, st), "poison scratch");
    const pc::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
    layer.forward(d_x.data(), d_y.data(), k.batch, k.seq, in.valid.empty() ? nullptr : d_valid.data(), in.step, ws, st);
    layer.backward(d_dy.data(), d_dx.data(), ws, st);
    stream.synchronize();
    LayerOutputs out(c);
    out.y = from_storage(pc::to_host(d_y.data(), n, st));
    out.dx = from_storage(pc::to_host(d_dx.data(), n, st));
    layer.grads().download(out.grads, st);
    return out;
  }, "gpu");
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: kept, dropout on, no padding", "[cuda]", float, pc::bf16, pc::fp16) {
  LayerCase k;
  k.config = base_config();
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: padding, evaluation", "[cuda]", float, pc::bf16, pc::fp16) {
  LayerCase k;
  k.config = base_config();
  k.padding = true;
  k.training = false;
  k.scale = 1.0;
  k.seed = 2;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: per-sample rows with padding and dropout", "[cuda]", float, pc::bf16,
                   pc::fp16) {
  LayerCase k;
  k.config = base_config();
  k.batch = 4;
  k.padding = true;
  k.rows = {1, 0, 1, 1};
  k.seed = 3;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: Post-LN, per-sample rows with padding and dropout", "[cuda]", float,
                   pc::bf16, pc::fp16) {
  LayerCase k;
  k.config = base_config();
  k.config.norm = pld::NormPosition::post;
  k.batch = 4;
  k.padding = true;
  k.rows = {0, 1, 1, 1};
  k.seed = 5;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: tanh GELU through the cuBLASLt epilogues", "[cuda]", float, pc::bf16) {
  LayerCase k;
  k.config = base_config();
  k.config.gelu = pld::GeluForm::tanh;
  k.seed = 4;
  // cuBLASLt's GELU_AUX_BIAS / DGELU epilogues compute the tanh form. Before the first GPU run
  // this case allowed fp32 2e-3 in case the epilogue used an approximate tanh (~5e-4 relative);
  // on an H200 (cuBLASLt 13.0) every fp32 tensor of every case stayed under 2.6e-6, so the case
  // keeps the storage type's bound, which a wrong formula (erf vs tanh: up to ~2e-2) fails.
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: odd shapes (F % 8 != 0, T % 4 != 0, T > 128)", "[cuda]", float, pc::bf16) {
  LayerCase k;
  k.config = base_config();
  k.config.hidden = 48;
  k.config.heads = 3;
  k.config.ffn = 100;
  k.config.gelu = pld::GeluForm::tanh;  // F % 8 != 0: pld's GELU kernels, not the epilogue
  k.batch = 2;
  k.seq = 130;
  k.padding = true;
  k.seed = 5;
  run_case<TestType>(k);
  k.seq = 300;  // softmax with four column groups per lane
  k.config.ln_eps = 1e-12;
  k.seed = 6;
  run_case<TestType>(k);
}

TEST_CASE("A dropped CUDA layer is the identity, launches nothing and needs no workspace", "[cuda]") {
  const LayerConfig c = base_config();
  const int B = 2, T = 8;
  const std::size_t n = static_cast<std::size_t>(B) * T * c.hidden;
  pc::Stream stream;
  pc::PreLnLayer<pc::bf16> layer(c);
  layer.grads().zero(stream.get());
  LayerStep step;
  step.kept = false;
  step.scale = 0.0;
  const auto sizes = layer.workspace_sizes(B, T, step);
  CHECK(sizes.saved == 0);
  CHECK(sizes.scratch == 0);
  const auto x = to_storage<pc::bf16>(normals(n, 9, 1, 1.0));
  auto d_x = pc::to_device(x, stream.get());
  const auto before = layer.launches();
  layer.forward(d_x.data(), d_x.data(), B, T, nullptr, step, pc::Workspace{}, stream.get());  // in place
  layer.backward(d_x.data(), d_x.data(), pc::Workspace{}, stream.get());
  CHECK(layer.launches().total() == before.total());  // nothing at all on the stream
  const auto back = pc::to_host(d_x.data(), n, stream.get());
  CHECK(std::memcmp(back.data(), x.data(), n * sizeof(pc::bf16)) == 0);
  // Out of place: one device-to-device copy, still no kernel and no GEMM.
  pc::DeviceArray<pc::bf16> d_y(n);
  layer.forward(d_x.data(), d_y.data(), B, T, nullptr, step, pc::Workspace{}, stream.get());
  CHECK(layer.launches().kernels == before.kernels);
  CHECK(layer.launches().gemms == before.gemms);
  CHECK(layer.launches().copies == before.copies + 1);
  const auto y = pc::to_host(d_y.data(), n, stream.get());
  CHECK(std::memcmp(y.data(), x.data(), n * sizeof(pc::bf16)) == 0);
  pld::cpu::LayerParams<float> grads(c);
  layer.grads().download(grads, stream.get());
  for (auto& t : grads.tensors())
    for (std::size_t i = 0; i < t.size; ++i) REQUIRE(static_cast<const float*>(t.data)[i] == 0.0f);
}

TEST_CASE("A kept CUDA layer: 18 GEMMs per step, in place equals out of place, same bits every run", "[cuda]") {
  const LayerConfig c = base_config();
  const int B = 3, T = 32;
  const std::size_t n = static_cast<std::size_t>(B) * T * c.hidden;
  pc::Stream stream;
  cudaStream_t st = stream.get();
  pc::PreLnLayer<pc::bf16> layer(c);
  pld::cpu::LayerParams<double> host(c);
  host.init_normal(11, 0.05);
  layer.params().upload(host, st);
  LayerStep step;
  step.scale = 1.25;
  step.seed = 5;
  const auto sizes = layer.workspace_sizes(B, T, step);
  pc::DeviceBuffer saved(sizes.saved), scratch(sizes.scratch);
  const pc::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
  const auto x = to_storage<pc::bf16>(normals(n, 12, 1, 1.0));
  const auto dy = to_storage<pc::bf16>(normals(n, 12, 2, 1.0));

  auto run = [&](bool in_place, std::vector<pc::bf16>& y_out, std::vector<pc::bf16>& dx_out, std::vector<float>& g_out) {
    layer.grads().zero(st);
    auto d_x = pc::to_device(x, st);
    auto d_dy = pc::to_device(dy, st);
    pc::DeviceArray<pc::bf16> d_y(n), d_dx(n);
    pc::bf16* y = in_place ? d_x.data() : d_y.data();
    pc::bf16* dx = in_place ? d_dy.data() : d_dx.data();
    const auto before = layer.launches();
    layer.forward(d_x.data(), y, B, T, nullptr, step, ws, st);
    layer.backward(d_dy.data(), dx, ws, st);
    CHECK(layer.launches().gemms - before.gemms == 18);  // 6 forward, 12 backward
    y_out = pc::to_host(y, n, st);
    dx_out = pc::to_host(dx, n, st);
    g_out = pc::to_host(layer.grads().get(pc::ParamId::in_proj_weight), layer.grads().size(pc::ParamId::in_proj_weight), st);
  };
  std::vector<pc::bf16> y1, dx1, y2, dx2, y3, dx3;
  std::vector<float> g1, g2, g3;
  run(false, y1, dx1, g1);
  run(true, y2, dx2, g2);
  run(false, y3, dx3, g3);
  CHECK(std::memcmp(y1.data(), y2.data(), n * sizeof(pc::bf16)) == 0);
  CHECK(std::memcmp(dx1.data(), dx2.data(), n * sizeof(pc::bf16)) == 0);
  CHECK(std::memcmp(y1.data(), y3.data(), n * sizeof(pc::bf16)) == 0);
  CHECK(g1 == g3);
  CHECK(g1 == g2);
}

TEST_CASE("CUDA layer misuse is one clear error", "[cuda]") {
  const LayerConfig c = base_config();
  pc::Stream stream;
  pc::PreLnLayer<float> layer(c);
  CHECK_THROWS_WITH(layer.backward(nullptr, nullptr, pc::Workspace{}, stream.get()), Catch::Matchers::Contains("without a forward"));
  LayerStep step;
  pc::DeviceArray<float> x(static_cast<std::size_t>(2) * 8 * c.hidden);
  CHECK_THROWS_WITH(layer.forward(x.data(), x.data(), 2, 8, nullptr, step, pc::Workspace{}, stream.get()),
                    Catch::Matchers::Contains("workspace too small"));
  CHECK_THROWS_WITH(layer.forward(x.data(), x.data(), 2, 2000, nullptr, step, pc::Workspace{}, stream.get()),
                    Catch::Matchers::Contains("1..1024"));
  CHECK(layer.launches().kernels == 0);
  CHECK(layer.launches().gemms == 0);
}

TEST_CASE("Parameters and gradients are zero when constructed, seen from a non-blocking stream", "[cuda]") {
  // The constructor's zeroing must be complete before work on any stream (a cudaMemset on the
  // legacy default stream is not ordered before a non-blocking stream's work).
  const LayerConfig c = pld::test::test_config(256, 4);
  pc::Stream stream;
  for (int round = 0; round < 4; ++round) {
    pc::DeviceLayerParams<float> g(c);
    pld::cpu::LayerParams<float> host(c);
    g.download(host, stream.get());
    for (auto& t : host.tensors())
      for (std::size_t i = 0; i < t.size; ++i) REQUIRE(static_cast<const float*>(t.data)[i] == 0.0f);
  }
}

TEST_CASE("Column sums over more rows than 65535 chunks of the grid's y extent", "[cuda]") {
  // 4,194,305 rows: one more chunk than gridDim.y may hold; each row is (1, 2), so the sums are exact.
  const int rows = 65535 * 64 + 1, cols = 2;
  pc::Stream stream;
  std::vector<float> a(static_cast<std::size_t>(rows) * cols);
  for (int r = 0; r < rows; ++r) {
    a[static_cast<std::size_t>(r) * cols] = 1.0f;
    a[static_cast<std::size_t>(r) * cols + 1] = 2.0f;
  }
  auto d_a = pc::to_device(a, stream.get());
  pc::DeviceArray<float> scratch(static_cast<std::size_t>(pc::column_sums_scratch(rows, cols)));
  auto d_out = pc::to_device(std::vector<float>{0.5f, 0.0f}, stream.get());
  pc::LaunchCounts counts;
  pc::column_sums<float>(d_a.data(), nullptr, nullptr, nullptr, rows, cols, d_out.data(), scratch.data(), stream.get(), counts);
  const auto out = pc::to_host(d_out.data(), 2, stream.get());
  CHECK(out[0] == 0.5f + static_cast<float>(rows));
  CHECK(out[1] == 2.0f * static_cast<float>(rows));
}
