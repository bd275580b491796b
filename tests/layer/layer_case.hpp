// One comparison harness for a layer of the shared logic (pld::BasicPreLnLayer on any backend)
// against the reference layer in double (tests/layer/reference_layer.hpp: the CPU layer as written
// before the logic was shared, checked by finite differences and PyTorch goldens), shared by the GPU tests (tests/cuda/test_cuda_layer.cu),
// the host emulations (tests/test_cuda_emulated.cpp, test_cuda_simt.cpp) and the CPU backend
// (tests/test_cpu_shared_layer.cpp), so the harness the GPU runs is exercised in CI too. A case builds random parameters (LayerNorm
// weights around 1), inputs and output gradients, rounds them to the storage type T (the CPU
// reference gets the rounded values, so the error measures the layer's arithmetic alone), runs
// the layer under test through a callback, and compares y, dx and all twelve parameter gradients.
//
// Tolerance rule: per tensor, ||layer - ref|| / ||ref|| <= bound<T>(), and every element finite.
// fp32 storage uses pure fp32 GEMMs (no TF32). 16-bit storage rounds every stored activation.
// Bounds, set from the first GPU run (H200, 2026-11-30; worst over every case and tensor: fp32
// 2.6e-6, fp16 8.6e-4, bf16 7.0e-3) with a margin of about 2x for 16 bits and 8x for fp32:
// fp32 2e-5, fp16 2e-3, bf16 1.5e-2 (before that run: 1e-4, 5e-3, 3e-2). The host emulation
// measured fp32 3.6e-7, fp16 9.6e-4, bf16 6.8e-3 (docs/cuda_layer.md). fp64 (the CPU backend in
// double against the CPU layer in double: the same arithmetic in another order) 1e-12.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cpu_reference.hpp"
#include "pld/cpu/bf16.hpp"
#include "pld/cpu/layer_params.hpp"
#if __has_include(<cuda_bf16.h>)
#include "pld/cuda/storage.hpp"  // bf16 and fp16 storage where the CUDA headers are on the path
#define PLD_TEST_CUDA_STORAGE 1
#endif
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld::test {

struct LayerCase {
  LayerConfig config;
  int batch = 3, seq = 16;
  bool padding = false;   // sequence b has its last (5 b) % T positions padded; sequence 0 none
  bool training = true;   // dropout on
  bool kept = true;
  double scale = 1.0 / 0.7;
  std::vector<std::uint8_t> rows;  // per-sample mode when non-empty
  std::uint64_t seed = 1;
  double tolerance = 0.0;  // the case's relative-error bound; 0: bound<T>() of the storage type
};

// Everything the layer under test gets, already rounded to its storage type.
struct LayerInputs {
  pld::cpu::LayerParams<double> params;
  std::vector<double> x, dy;         // (B, T, H)
  std::vector<std::uint8_t> valid;   // (B, T) or empty
  LayerStep step;                    // step.rows points into the case's rows
  explicit LayerInputs(const LayerConfig& c) : params(c) {}
};

struct LayerOutputs {
  std::vector<double> y, dx;
  pld::cpu::LayerParams<double> grads;
  explicit LayerOutputs(const LayerConfig& c) : grads(c) {}
};

// A layer of the tests' size: dropout 0.1 at both sites, as BERT; F = 0 means 4H.
inline LayerConfig test_config(int hidden, int heads, int ffn = 0) {
  LayerConfig c;
  c.hidden = hidden;
  c.heads = heads;
  c.ffn = ffn;
  c.attention_dropout = 0.1f;
  c.hidden_dropout = 0.1f;
  return c;
}

// The cases every backend's layer is checked on (the host emulation, the CPU backend), by name:
// dropout, padding in evaluation, per-sample rows, the tanh GELU (the cuBLASLt epilogue path on
// the CUDA backends), Post-LN, and odd shapes.
inline std::vector<std::pair<std::string, LayerCase>> standard_layer_cases(const LayerConfig& config) {
  std::vector<std::pair<std::string, LayerCase>> out;
  LayerCase k;
  k.config = config;
  out.emplace_back("kept, dropout on", k);
  LayerCase pad = k;
  pad.padding = true;
  pad.training = false;
  out.emplace_back("padding, evaluation", pad);
  LayerCase rows = k;
  rows.batch = 4;
  rows.padding = true;
  rows.rows = {0, 1, 1, 0};
  out.emplace_back("per-sample rows, padding, dropout", rows);
  LayerCase tanh = k;
  tanh.config.gelu = pld::GeluForm::tanh;
  out.emplace_back("tanh GELU (the epilogue path)", tanh);
  LayerCase post = k;
  post.config.norm = pld::NormPosition::post;
  out.emplace_back("Post-LN, dropout on", post);
  LayerCase post_rows = rows;
  post_rows.config.norm = pld::NormPosition::post;
  post_rows.rows = {1, 0, 1, 1};
  out.emplace_back("Post-LN, per-sample rows, padding, dropout", post_rows);
  LayerCase post_tanh = tanh;
  post_tanh.config.norm = pld::NormPosition::post;
  out.emplace_back("Post-LN, tanh GELU", post_tanh);
  LayerCase odd = k;
  odd.config.hidden = 24;
  odd.config.heads = 3;
  odd.config.ffn = 50;
  odd.config.ln_eps = 1e-12;
  odd.batch = 2;
  odd.seq = 37;
  odd.padding = true;
  out.emplace_back("odd shapes: F % 8 != 0, T % 4 != 0, eps 1e-12", odd);
  return out;
}

// n normals N(0, std_dev) from Philox, tensor id `id` of `seed`.
inline std::vector<double> normals(std::size_t n, std::uint64_t seed, std::uint32_t id, double std_dev) {
  std::vector<double> v(n);
  pld::cpu::fill_normal(v, seed, 1, id, std_dev);
  return v;
}

// A storage type's name, its rounding from double and its one-layer error bound.
template <class T>
struct TestStorage;
template <>
struct TestStorage<double> {
  static constexpr const char* name = "fp64";
  static double bound() { return 1e-12; }
  static double to_double(double v) { return v; }
  static double from_double(double v) { return v; }
};
template <>
struct TestStorage<float> {
  static constexpr const char* name = "fp32";
  static double bound() { return 2e-5; }
  static double to_double(float v) { return v; }
  static float from_double(double v) { return static_cast<float>(v); }
};
// The CPU backend's bf16 storage: the GPU's bf16 bound.
template <>
struct TestStorage<pld::cpu::bf16> {
  static constexpr const char* name = "bf16";
  static double bound() { return 1.5e-2; }
  static double to_double(pld::cpu::bf16 v) { return pld::cpu::to_float(v); }
  static pld::cpu::bf16 from_double(double v) { return pld::cpu::bf16(static_cast<float>(v)); }
};
#if defined(PLD_TEST_CUDA_STORAGE)
template <>
struct TestStorage<pld::cuda::fp16> {
  static constexpr const char* name = "fp16";
  static double bound() { return 2e-3; }
  static double to_double(pld::cuda::fp16 v) { return pld::cuda::to_float(v); }
  static pld::cuda::fp16 from_double(double v) { return pld::cuda::from_float<pld::cuda::fp16>(static_cast<float>(v)); }
};
template <>
struct TestStorage<pld::cuda::bf16> {
  static constexpr const char* name = "bf16";
  static double bound() { return 1.5e-2; }
  static double to_double(pld::cuda::bf16 v) { return pld::cuda::to_float(v); }
  static pld::cuda::bf16 from_double(double v) { return pld::cuda::from_float<pld::cuda::bf16>(static_cast<float>(v)); }
};
#endif

template <class T>
double bound() {
  return TestStorage<T>::bound();
}

template <class T>
std::vector<double> rounded(std::vector<double> v) {
  for (auto& e : v) e = TestStorage<T>::to_double(TestStorage<T>::from_double(e));
  return v;
}

template <class T>
std::vector<T> to_storage(const std::vector<double>& v) {
  std::vector<T> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = TestStorage<T>::from_double(v[i]);
  return r;
}

template <class T>
std::vector<double> from_storage(const std::vector<T>& v) {
  std::vector<double> r(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) r[i] = TestStorage<T>::to_double(v[i]);
  return r;
}

template <class T>
LayerInputs make_inputs(const LayerCase& k) {
  const LayerConfig& c = k.config;
  LayerInputs in(c);
  std::uint32_t id = 0;
  for (auto& t : in.params.tensors()) {
    const bool ln_weight = t.name.find("norm") != std::string::npos && t.name.find("weight") != std::string::npos;
    const double sd = t.shape.size() == 2 ? 1.0 / std::sqrt(static_cast<double>(t.shape[1])) : 0.1;
    std::vector<double> v = normals(t.size, k.seed, 100 + id++, sd);
    if (ln_weight)
      for (auto& e : v) e += 1.0;
    v = rounded<T>(v);
    std::memcpy(t.data, v.data(), v.size() * sizeof(double));
  }
  const std::size_t n = static_cast<std::size_t>(k.batch) * static_cast<std::size_t>(k.seq) * static_cast<std::size_t>(c.hidden);
  in.x = rounded<T>(normals(n, k.seed, 1, 1.0));
  in.dy = rounded<T>(normals(n, k.seed, 2, 1.0));
  if (k.padding) {
    in.valid.assign(static_cast<std::size_t>(k.batch) * static_cast<std::size_t>(k.seq), 1);
    for (int b = 0; b < k.batch; ++b)
      for (int t = k.seq - (b * 5) % k.seq; t < k.seq; ++t) in.valid[static_cast<std::size_t>(b * k.seq + t)] = 0;
  }
  in.step.kept = k.kept;
  in.step.scale = k.kept ? k.scale : 0.0;
  in.step.training = k.training;
  in.step.seed = 0xfeedULL + k.seed;
  in.step.step = 41;
  in.step.layer = 3;
  if (!k.rows.empty()) in.step.rows = k.rows.data();
  return in;
}

inline double rel_error(const std::vector<double>& a, const std::vector<double>& ref, std::size_t& non_finite) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) ++non_finite;
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

// One tensor against its reference: prints "rel-error <label> <storage> <what> <value>" (the line
// device-check.sh summarises), checks every element finite and the relative L2 error within
// `limit`, and returns the error.
inline double check_tensor(const std::vector<double>& got, const std::vector<double>& ref, double limit, const char* label,
                           const char* storage, const std::string& what) {
  REQUIRE(got.size() == ref.size());
  std::size_t bad = 0;
  const double e = rel_error(got, ref, bad);
  std::printf("rel-error %s %s %s %.3e\n", label, storage, what.c_str(), e);
  INFO(what << ": relative L2 error " << e << " (bound " << limit << "), non-finite elements " << bad);
  CHECK(bad == 0);
  CHECK(e <= limit);
  return e;
}

// Runs `run(const LayerInputs&) -> LayerOutputs` on case k and checks it against the CPU layer in
// double. Prints "rel-error <label> <storage> <tensor> <value>" per tensor (device-check.sh
// summarises them) and returns the worst error.
template <class T, class Run>
double check_layer_case(const LayerCase& k, Run run, const char* label) {
  const LayerConfig& c = k.config;
  const char* storage = TestStorage<T>::name;
  INFO(label << " storage " << storage << " B " << k.batch << " T " << k.seq << " H " << c.hidden << " F " << c.ffn_size()
             << " padding " << k.padding << " training " << k.training << " kept " << k.kept << " per-sample "
             << !k.rows.empty() << " gelu " << (c.gelu == GeluForm::erf ? "erf" : "tanh"));
  LayerInputs in = make_inputs<T>(k);
  std::vector<double> y_ref, dx_ref;
  pld::cpu::LayerParams<double> g_ref(c);
  cpu_reference(c, in.params, in.x, in.dy, k.batch, k.seq, in.valid.empty() ? nullptr : in.valid.data(), in.step, y_ref, dx_ref,
                g_ref);
  LayerOutputs out = run(in);

  double worst = 0.0;
  const double limit = k.tolerance > 0.0 ? k.tolerance : bound<T>();
  auto compare = [&](const std::vector<double>& got, const std::vector<double>& ref, const std::string& what) {
    worst = std::max(worst, check_tensor(got, ref, limit, label, storage, what));
  };
  compare(out.y, y_ref, "y");
  compare(out.dx, dx_ref, "dx");
  auto g = out.grads.tensors();
  auto r = g_ref.tensors();
  for (std::size_t i = 0; i < g.size(); ++i) {
    const auto* gp = static_cast<const double*>(g[i].data);
    const auto* rp = static_cast<const double*>(r[i].data);
    compare(std::vector<double>(gp, gp + g[i].size), std::vector<double>(rp, rp + r[i].size), "grad:" + r[i].name);
  }
  return worst;
}

}  // namespace pld::test
