// The CUDA Pre-LN layer against the CPU layer in double on identical weights and inputs (the
// Eigen run_and_compare_to_gpu habit): output, input gradient and all twelve parameter gradients,
// kept and dropped, with and without padding, dropout on and off, per-sample mode, both GELU
// paths (cuBLASLt epilogue and pld's kernel), fp32 / bf16 / fp16 storage. Inputs are fresh random
// numbers per case; outputs and workspace are poisoned (all bits set: NaN in every storage type)
// before each run, so an element nothing wrote fails the comparison.
//
// Tolerance rule: per tensor, ||gpu - ref|| / ||ref|| <= tol, and every element finite. Inputs and
// parameters are first rounded to the storage type and the CPU reference gets the rounded values,
// so tol measures the layer's arithmetic alone. fp32 storage uses pure fp32 GEMMs
// (CUBLAS_COMPUTE_32F, no TF32): expected ~1e-6, bound 1e-4. 16-bit storage rounds every
// activation: METHOD.md's guide puts bf16 between 1e-3 and 1e-2, so bf16 is bounded at 3e-2 and
// fp16 (3 more mantissa bits) at 5e-3. These bounds are stated before any GPU run; a run that
// needs them loosened must say so in docs/cuda_layer.md.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_reference.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/cuda.hpp"

namespace pc = pld::cuda;
using pld::LayerConfig;
using pld::LayerStep;

namespace {

template <class T>
double tolerance() {
  if (std::is_same<T, float>::value) return 1e-4;
  if (std::is_same<T, pc::fp16>::value) return 5e-3;
  return 3e-2;
}

std::vector<double> normals(std::size_t n, std::uint64_t seed, std::uint32_t id, double std_dev) {
  std::vector<double> v(n);
  pld::cpu::fill_normal(v, seed, 1, id, std_dev);
  return v;
}

// Rounds through T so host reference and device see the same values.
template <class T>
std::vector<double> rounded(const std::vector<double>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = pc::to_float(pc::from_float<T>(static_cast<float>(v[i])));
  return r;
}

template <class T>
std::vector<T> to_storage(const std::vector<double>& v) {
  std::vector<T> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = pc::from_float<T>(static_cast<float>(v[i]));
  return r;
}

template <class T>
std::vector<double> from_storage(const std::vector<T>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = pc::to_float(v[i]);
  return r;
}

// Also prints "rel-error <storage> <tensor> <value>" so a device run records the errors it saw.
void compare(const std::vector<double>& gpu, const std::vector<double>& ref, double tol, const std::string& what,
             const char* storage) {
  REQUIRE(gpu.size() == ref.size());
  double num = 0.0, den = 0.0;
  std::size_t bad = 0;
  for (std::size_t i = 0; i < gpu.size(); ++i) {
    if (!std::isfinite(gpu[i])) ++bad;
    num += (gpu[i] - ref[i]) * (gpu[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  const double rel = den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
  std::printf("rel-error %s %s %.3e\n", storage, what.c_str(), rel);
  INFO(what << ": relative L2 error " << rel << " (bound " << tol << "), non-finite elements " << bad);
  CHECK(bad == 0);
  CHECK(rel <= tol);
}

struct Case {
  int batch = 3, seq = 16;
  LayerConfig config;
  bool padding = false;
  bool training = true;
  bool kept = true;
  double scale = 1.0 / 0.7;
  std::vector<std::uint8_t> rows;  // per-sample mode when non-empty
  std::uint64_t seed = 1;
};

LayerConfig base_config() {
  LayerConfig c;
  c.hidden = 64;
  c.heads = 4;
  c.ffn = 0;
  c.attention_dropout = 0.1f;
  c.hidden_dropout = 0.1f;
  return c;
}

template <class T>
struct Device {
  pc::Stream stream;
  pc::DeviceBuffer saved, scratch;

  pc::Workspace workspace(const pc::WorkspaceSizes& sz) {
    saved.resize(sz.saved);
    scratch.resize(sz.scratch);
    if (sz.saved) pc::check(cudaMemsetAsync(saved.data(), 0xFF, sz.saved, stream.get()), "poison saved");
    if (sz.scratch) pc::check(cudaMemsetAsync(scratch.data(), 0xFF, sz.scratch, stream.get()), "poison scratch");
    return pc::Workspace{saved.data(), sz.saved, scratch.data(), sz.scratch};
  }
};

// Runs the case on the GPU in storage T and on the CPU in double; compares everything.
template <class T>
void run_case(const Case& k) {
  const LayerConfig& c = k.config;
  const int B = k.batch, T_ = k.seq, H = c.hidden;
  const std::size_t n = static_cast<std::size_t>(B) * T_ * H;
  INFO("storage " << pc::Storage<T>::name << " B " << B << " T " << T_ << " H " << H << " F " << c.ffn_size()
                  << " padding " << k.padding << " training " << k.training << " kept " << k.kept
                  << " per-sample " << !k.rows.empty() << " gelu " << (c.gelu == pld::GeluForm::erf ? "erf" : "tanh"));

  // Parameters: every tensor random (LayerNorm weights around 1), rounded to T.
  pld::cpu::LayerParams<double> params(c);
  std::uint32_t id = 0;
  for (auto& t : params.tensors()) {
    const bool ln_weight = t.name.find("norm") != std::string::npos && t.name.find("weight") != std::string::npos;
    const double sd = t.shape.size() == 2 ? 1.0 / std::sqrt(static_cast<double>(t.shape[1])) : 0.1;
    auto v = normals(t.size, k.seed, 100 + id++, sd);
    if (ln_weight)
      for (auto& e : v) e += 1.0;
    v = rounded<T>(v);
    std::memcpy(t.data, v.data(), v.size() * sizeof(double));
  }
  const auto x = rounded<T>(normals(n, k.seed, 1, 1.0));
  const auto dy = rounded<T>(normals(n, k.seed, 2, 1.0));
  std::vector<std::uint8_t> valid;
  if (k.padding) {
    valid.assign(static_cast<std::size_t>(B) * T_, 1);
    for (int b = 0; b < B; ++b)
      for (int t = T_ - (b * 5) % T_; t < T_; ++t) valid[static_cast<std::size_t>(b) * T_ + t] = 0;  // row 0 unpadded
  }
  LayerStep step;
  step.kept = k.kept;
  step.scale = k.kept ? k.scale : 0.0;
  step.training = k.training;
  step.seed = 0xfeedULL + k.seed;
  step.step = 41;
  step.layer = 3;
  if (!k.rows.empty()) step.rows = k.rows.data();

  std::vector<double> y_ref, dx_ref;
  pld::cpu::LayerParams<double> grads_ref(c);
  pld::test::cpu_reference(c, params, x, dy, B, T_, valid.empty() ? nullptr : valid.data(), step, y_ref, dx_ref, grads_ref);

  Device<T> dev;
  cudaStream_t st = dev.stream.get();
  pc::PreLnLayer<T> layer(c);
  layer.params().upload(params, st);
  layer.grads().zero(st);
  auto d_x = pc::to_device(to_storage<T>(x), st);
  auto d_dy = pc::to_device(to_storage<T>(dy), st);
  pc::DeviceArray<T> d_y(n), d_dx(n);
  pc::check(cudaMemsetAsync(d_y.data(), 0xFF, n * sizeof(T), st), "poison y");
  pc::check(cudaMemsetAsync(d_dx.data(), 0xFF, n * sizeof(T), st), "poison dx");
  pc::DeviceArray<std::uint8_t> d_valid;
  if (!valid.empty()) d_valid = pc::to_device(valid, st);
  const auto sizes = layer.workspace_sizes(B, T_, step);
  const pc::Workspace ws = dev.workspace(sizes);
  layer.forward(d_x.data(), d_y.data(), B, T_, valid.empty() ? nullptr : d_valid.data(), step, ws, st);
  layer.backward(d_dy.data(), d_dx.data(), ws, st);
  dev.stream.synchronize();

  const double tol = tolerance<T>();
  const char* name = pc::Storage<T>::name;
  compare(from_storage(pc::to_host(d_y.data(), n, st)), y_ref, tol, "y", name);
  compare(from_storage(pc::to_host(d_dx.data(), n, st)), dx_ref, tol, "dx", name);
  pld::cpu::LayerParams<double> grads(c);
  layer.grads().download(grads, st);
  auto g_ref = grads_ref.tensors();
  auto g_gpu = grads.tensors();
  for (std::size_t i = 0; i < g_ref.size(); ++i) {
    const auto* r = static_cast<const double*>(g_ref[i].data);
    const auto* g = static_cast<const double*>(g_gpu[i].data);
    compare(std::vector<double>(g, g + g_gpu[i].size), std::vector<double>(r, r + g_ref[i].size), tol, "grad:" + g_ref[i].name, name);
  }
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: kept, dropout on, no padding", "[cuda]", float, pc::bf16, pc::fp16) {
  Case k;
  k.config = base_config();
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: padding, evaluation", "[cuda]", float, pc::bf16, pc::fp16) {
  Case k;
  k.config = base_config();
  k.padding = true;
  k.training = false;
  k.scale = 1.0;
  k.seed = 2;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: per-sample rows with padding and dropout", "[cuda]", float, pc::bf16,
                   pc::fp16) {
  Case k;
  k.config = base_config();
  k.batch = 4;
  k.padding = true;
  k.rows = {1, 0, 1, 1};
  k.seed = 3;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: tanh GELU through the cuBLASLt epilogues", "[cuda]", float, pc::bf16) {
  Case k;
  k.config = base_config();
  k.config.gelu = pld::GeluForm::tanh;
  k.seed = 4;
  run_case<TestType>(k);
}

TEMPLATE_TEST_CASE("CUDA layer matches the CPU layer: odd shapes (F % 8 != 0, T % 4 != 0, T > 128)", "[cuda]", float, pc::bf16) {
  Case k;
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
