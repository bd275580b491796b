// The layer logic written once for every backend (pld::BasicPreLnLayer, pld/layer/) on the CPU
// backend (pld::cpu::LayerBackend: pld::cpu's Gemm, LayerNorm, GELU and Philox dropout), against
// the reference layer in double (tests/layer/reference_layer.hpp) on the same rounded weights and inputs, with the harness the GPU
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

namespace {
// Values of a few units' spread, rounded to bf16 (so the float pass sees exactly the bf16 inputs).
std::vector<pcpu::bf16> bf16_values(std::size_t n, std::uint32_t seed, double scale = 1.0) {
  std::vector<pcpu::bf16> v(n);
  std::uint32_t s = seed * 2654435761u + 1u;
  for (auto& e : v) {
    s = s * 1664525u + 1013904223u;
    e = pcpu::bf16(static_cast<float>(scale * ((static_cast<double>(s >> 8) / 16777216.0) * 4.0 - 2.0)));
  }
  return v;
}
std::vector<float> wide(const std::vector<pcpu::bf16>& v) {
  std::vector<float> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = pcpu::to_float(v[i]);
  return out;
}
// How many elements of a bf16 result differ from the float result rounded once.
std::size_t mismatches(const std::vector<pcpu::bf16>& got, const std::vector<float>& want) {
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) bad += got[i].bits != pcpu::bf16(want[i]).bits ? 1 : 0;
  return bad;
}
}  // namespace

TEST_CASE("The bf16 passes are the float passes on the same values, each stored value rounded once", "[cpu][shared-layer][bf16]") {
  using B = pcpu::LayerBackend<pcpu::bf16>;
  using F = pcpu::LayerBackend<float>;
  pld::LaunchCounts lc;
  const int rows = 37, cols = 96;  // 3552 elements: spans of 1024 and a ragged end
  const std::size_t n = static_cast<std::size_t>(rows) * cols;
  pld::DropoutMask mask;
  mask.seed = 11;
  mask.step = 5;
  mask.layer = 2;
  mask.site = 1;
  mask.rate = 0.1f;
  mask.scale = 1.0f / 0.9f;
  const auto x = bf16_values(n, 1), t = bf16_values(n, 2), dy = bf16_values(n, 3), res = bf16_values(n, 4);
  const auto gamma = bf16_values(static_cast<std::size_t>(cols), 5), beta = bf16_values(static_cast<std::size_t>(cols), 6);
  const auto xf = wide(x), tf = wide(t), dyf = wide(dy), resf = wide(res), gammaf = wide(gamma), betaf = wide(beta);

  SECTION("GELU forward and backward, both forms") {
    for (const pld::GeluForm form : {pld::GeluForm::erf, pld::GeluForm::tanh}) {
      std::vector<pcpu::bf16> act(n), dpre(n);
      std::vector<float> actf(n), dpref(n);
      B::gelu_forward(x.data(), act.data(), static_cast<std::int64_t>(n), form, {}, lc);
      F::gelu_forward(xf.data(), actf.data(), static_cast<std::int64_t>(n), form, {}, lc);
      CHECK(mismatches(act, actf) == 0);
      B::gelu_backward(dy.data(), x.data(), dpre.data(), static_cast<std::int64_t>(n), form, {}, lc);
      F::gelu_backward(dyf.data(), xf.data(), dpref.data(), static_cast<std::int64_t>(n), form, {}, lc);
      CHECK(mismatches(dpre, dpref) == 0);
    }
  }
  SECTION("GELU keeping its derivative (what the layer runs): the activation, GELU' in place, the backward's product") {
    for (const pld::GeluForm form : {pld::GeluForm::erf, pld::GeluForm::tanh}) {
      std::vector<pcpu::bf16> keep = x, act(n), dpre(n);
      std::vector<float> keepf = xf, actf(n), dpref(n), act_plain(n), ones(n, 1.0f), deriv(n);
      B::gelu_forward_keep(keep.data(), act.data(), static_cast<std::int64_t>(n), form, {}, lc);
      F::gelu_forward_keep(keepf.data(), actf.data(), static_cast<std::int64_t>(n), form, {}, lc);
      CHECK(mismatches(act, actf) == 0);
      CHECK(mismatches(keep, keepf) == 0);
      // The float pass: the plain GELU's activation and the derivative its backward computes,
      // within a few ulp (the same formulas, contracted into FMAs differently in another loop;
      // the derivative crosses zero near x = -0.75, hence the absolute term).
      F::gelu_forward(xf.data(), act_plain.data(), static_cast<std::int64_t>(n), form, {}, lc);
      F::gelu_backward(ones.data(), xf.data(), deriv.data(), static_cast<std::int64_t>(n), form, {}, lc);
      for (std::size_t i = 0; i < n; ++i) {
        REQUIRE(std::abs(actf[i] - act_plain[i]) <= 4.8e-7f * std::abs(act_plain[i]) + 1e-7f);
        REQUIRE(std::abs(keepf[i] - deriv[i]) <= 4.8e-7f * std::abs(deriv[i]) + 1e-7f);
      }
      B::gelu_backward_given(dy.data(), keep.data(), dpre.data(), static_cast<std::int64_t>(n), {}, lc);
      F::gelu_backward_given(dyf.data(), wide(keep).data(), dpref.data(), static_cast<std::int64_t>(n), {}, lc);
      CHECK(mismatches(dpre, dpref) == 0);
      for (std::size_t i = 0; i < n; ++i) REQUIRE(dpref[i] == dyf[i] * pcpu::to_float(keep[i]));
    }
  }
  SECTION("residual + dropout, residual + dropout + LayerNorm, LayerNorm backward with the residual") {
    for (const bool with_x : {true, false}) {
      std::vector<pcpu::bf16> out(n);
      std::vector<float> outf(n);
      B::residual_dropout(with_x ? x.data() : nullptr, t.data(), out.data(), static_cast<std::int64_t>(n), 0.75f, mask, {}, lc);
      F::residual_dropout(with_x ? xf.data() : nullptr, tf.data(), outf.data(), static_cast<std::int64_t>(n), 0.75f, mask, {}, lc);
      CHECK(mismatches(out, outf) == 0);
    }
    std::vector<pcpu::bf16> h(n), y(n), dx(n);
    std::vector<float> mean(rows), rstd(rows), meanf(rows), rstdf(rows), yf(n), dxf(n);
    B::residual_layer_norm(x.data(), t.data(), h.data(), gamma.data(), beta.data(), y.data(), mean.data(), rstd.data(), rows, cols,
                           0.75f, mask, 1e-12, {}, lc);
    const std::vector<float> hf = wide(h);  // the float pass reads the stored (rounded) h, as the bf16 one does
    F::layer_norm_forward(hf.data(), gammaf.data(), betaf.data(), yf.data(), meanf.data(), rstdf.data(), rows, cols, 1e-12, {}, lc);
    CHECK(mismatches(y, yf) == 0);
    CHECK(mean == meanf);
    CHECK(rstd == rstdf);
    std::vector<float> dg(cols, 0.5f), db(cols, 0.25f), dgf = dg, dbf = db;
    B::layer_norm_backward(dy.data(), h.data(), mean.data(), rstd.data(), gamma.data(), res.data(), dx.data(), dg.data(), db.data(), rows,
                           cols, nullptr, {}, lc);
    F::layer_norm_backward(dyf.data(), hf.data(), meanf.data(), rstdf.data(), gammaf.data(), resf.data(), dxf.data(), dgf.data(),
                           dbf.data(), rows, cols, nullptr, {}, lc);
    CHECK(mismatches(dx, dxf) == 0);
    CHECK(dg == dgf);
    CHECK(db == dbf);
    std::vector<float> sums(cols, 1.0f), sumsf = sums;
    B::column_sums(dy.data(), rows, cols, sums.data(), nullptr, {}, lc);
    F::column_sums(dyf.data(), rows, cols, sumsf.data(), nullptr, {}, lc);
    CHECK(sums == sumsf);
  }
  SECTION("softmax forward (padding, dropout) and backward") {
    const int batch = 3, heads = 2, seq = 19;
    const std::size_t m = static_cast<std::size_t>(batch) * heads * seq * seq;
    const std::vector<float> scores = wide(bf16_values(m, 7, 3.0));
    std::vector<std::uint8_t> valid(static_cast<std::size_t>(batch) * seq, 1);
    for (int j = 11; j < seq; ++j) valid[static_cast<std::size_t>(seq) + static_cast<std::size_t>(j)] = 0;  // sequence 1 padded
    std::vector<pcpu::bf16> probs(m), dropped(m), ds(m);
    std::vector<float> probsf(m), droppedf(m), dsf(m);
    B::softmax_forward(scores.data(), valid.data(), probs.data(), dropped.data(), batch, heads, seq, mask, {}, lc);
    F::softmax_forward(scores.data(), valid.data(), probsf.data(), nullptr, batch, heads, seq, mask, {}, lc);
    CHECK(mismatches(probs, probsf) == 0);
    const std::vector<float> probs_stored = wide(probs);  // dropout of the stored probabilities
    F::dropout_probs(probs_stored.data(), droppedf.data(), static_cast<std::int64_t>(m), mask, {}, lc);
    CHECK(mismatches(dropped, droppedf) == 0);
    std::vector<float> dpd = wide(bf16_values(m, 8)), dpdf = dpd;
    B::softmax_backward(dpd.data(), probs.data(), dropped.data(), ds.data(), batch, heads, seq, 0.125f, mask, {}, lc);
    F::softmax_backward(dpdf.data(), probs_stored.data(), droppedf.data(), dsf.data(), batch, heads, seq, 0.125f, mask, {}, lc);
    CHECK(mismatches(ds, dsf) == 0);
  }
  // Not vacuous: the bf16 results are not the float ones unrounded.
  std::vector<pcpu::bf16> act(n);
  std::vector<float> actf(n);
  B::gelu_forward(x.data(), act.data(), static_cast<std::int64_t>(n), pld::GeluForm::erf, {}, lc);
  F::gelu_forward(xf.data(), actf.data(), static_cast<std::int64_t>(n), pld::GeluForm::erf, {}, lc);
  std::size_t inexact = 0;
  for (std::size_t i = 0; i < n; ++i) inexact += pcpu::to_float(act[i]) != actf[i] ? 1 : 0;
  CHECK(inexact > n / 2);
}

// ---- Data-parallel shards: LayerStep::first_row keys dropout by the row's place in the global batch.

namespace {
// Rows [first, first + rows) of a tensor of `batch` equal rows.
template <class V>
V rows_of(const V& v, int batch, int first, int rows) {
  const std::size_t per = v.size() / static_cast<std::size_t>(batch);
  return V(v.begin() + static_cast<std::ptrdiff_t>(per * static_cast<std::size_t>(first)),
           v.begin() + static_cast<std::ptrdiff_t>(per * static_cast<std::size_t>(first + rows)));
}
std::vector<double> all_grads(pcpu::LayerParams<double>& g) {
  std::vector<double> out;
  for (auto& t : g.tensors()) out.insert(out.end(), static_cast<const double*>(t.data), static_cast<const double*>(t.data) + t.size);
  return out;
}
}  // namespace

TEMPLATE_TEST_CASE("A data-parallel shard (LayerStep::first_row) computes its rows of the whole batch, dropout masks included",
                   "[cpu][shared-layer][dist]", double, float, pcpu::bf16) {
  if (std::is_same<TestType, pcpu::bf16>::value && !pcpu::has_onednn()) return;  // refused: see the single-layer case
  LayerCase k;
  k.config = config32();  // dropout 0.1 at both sites
  k.batch = 4;
  k.seq = 8;
  k.padding = true;
  SECTION("Pre-LN") {}
  SECTION("Post-LN") { k.config.norm = pld::NormPosition::post; }
  const LayerInputs in = pld::test::make_inputs<TestType>(k);
  LayerOutputs whole = run_shared_layer<TestType>(k, in);
  const double tol = pld::test::bound<TestType>();
  const std::vector<double> whole_grads = all_grads(whole.grads);
  std::vector<double> grads(whole_grads.size(), 0.0);
  for (int first : {0, 2}) {
    INFO("the shard of rows " << first << ".." << first + 1);
    LayerCase ks = k;
    ks.batch = 2;
    LayerInputs si = in;
    si.x = rows_of(in.x, k.batch, first, 2);
    si.dy = rows_of(in.dy, k.batch, first, 2);
    si.valid = rows_of(in.valid, k.batch, first, 2);
    si.step.first_row = first;
    LayerOutputs part = run_shared_layer<TestType>(ks, si);
    pld::test::check_tensor(part.y, rows_of(whole.y, k.batch, first, 2), tol, "shard", "", "y");
    pld::test::check_tensor(part.dx, rows_of(whole.dx, k.batch, first, 2), tol, "shard", "", "dx");
    const std::vector<double> g = all_grads(part.grads);
    for (std::size_t i = 0; i < g.size(); ++i) grads[i] += g[i];
    if (first > 0) {
      // Not vacuous: keyed by local rows (first_row 0), the second shard draws the first shard's
      // masks and its rows come out far from the whole batch's.
      si.step.first_row = 0;
      const LayerOutputs local = run_shared_layer<TestType>(ks, si);
      std::size_t bad = 0;
      CHECK(pld::test::rel_error(local.y, rows_of(whole.y, k.batch, first, 2), bad) > 10 * tol);
      CHECK(pld::test::rel_error(local.dx, rows_of(whole.dx, k.batch, first, 2), bad) > 10 * tol);
    }
  }
  pld::test::check_tensor(grads, whole_grads, tol, "shard", "", "the shards' summed gradients");
}

TEST_CASE("A shard's dropout mask continues the stream, out-of-range rows are one clear error", "[cpu][shared-layer][dist]") {
  pld::LayerStep step;
  step.seed = 99;
  step.step = 7;
  step.layer = 2;
  const pld::DropoutMask base = pld::make_dropout_mask(step, pld::DropoutSite::ffn_out, 0.25f, 0, 0);
  step.first_row = 3;
  const std::uint64_t per_row = 26;  // 78 = 4 * 19 + 2: the shard starts inside a Philox block
  const pld::DropoutMask shard = pld::make_dropout_mask(step, pld::DropoutSite::ffn_out, 0.25f, per_row, 2);
  CHECK(shard.offset == 78);
  std::size_t dropped = 0;
  for (std::uint64_t e = 0; e < 200; ++e) {
    REQUIRE(shard.keeps(e) == base.keeps(78 + e));
    dropped += shard.keeps(e) ? 0 : 1;
    bool k4[4];
    shard.keeps4(e, k4);
    for (int w = 0; w < 4; ++w) REQUIRE(k4[w] == base.keeps(78 + e + static_cast<std::uint64_t>(w)));
  }
  CHECK(dropped > 20);
  CHECK(dropped < 80);
  // The CPU's vectorized dropout at the same place of the stream (the layer's passes use it).
  std::vector<float> ones(200, 1.0f), got(200);
  pcpu::dropout_apply(ones.data(), got.data(), got.size(), 78, 0.25f, pcpu::DropoutKey{99, 7, 2, pld::DropoutSite::ffn_out});
  for (std::uint64_t e = 0; e < 200; ++e) REQUIRE((got[e] != 0.0f) == shard.keeps(e));

  // A global batch that would run past a stream's 2^34 elements, a negative row.
  step.first_row = (std::int64_t(1) << 34) / 1024;
  CHECK_THROWS_WITH(pld::make_dropout_mask(step, pld::DropoutSite::attention_probs, 0.1f, 1024, 1), Catch::Matchers::Contains("2^34"));
  CHECK_NOTHROW(pld::make_dropout_mask(step, pld::DropoutSite::attention_probs, 0.0f, 1024, 1));  // no dropout: no stream
  step.first_row = -1;
  CHECK_THROWS_WITH(pld::make_dropout_mask(step, pld::DropoutSite::attention_probs, 0.1f, 1024, 1), Catch::Matchers::Contains(">= 0"));
  pld::LayerPlan plan;
  plan.keep = {1, 1};
  plan.scale = {1.0, 1.0};
  plan.batch = 4;
  plan.sample_keep = {1, 0, 1, 1, 0, 1, 1, 0};
  const pld::LayerStep s = pld::LayerStep::from_plan(plan, 1, 5, 2);
  CHECK(s.first_row == 1);  // a per-sample layer keys its masks among the kept rows: layer 1 keeps one row before row 2
  CHECK(s.rows == plan.sample_keep.data() + 6);  // layer 1's row 2
  CHECK(pld::LayerStep::from_plan(plan, 0, 5, 2).first_row == 1);
  CHECK(pld::LayerStep::from_plan(plan, 0, 5, 3).first_row == 2);
  pld::LayerPlan per_layer = plan;  // per-layer plans: the row itself
  per_layer.batch = 0;
  per_layer.sample_keep.clear();
  CHECK(pld::LayerStep::from_plan(per_layer, 1, 5, 2).first_row == 2);
  CHECK_THROWS_WITH(pld::LayerStep::from_plan(plan, 0, 5, 4), Catch::Matchers::Contains("outside the plan's batch"));
  CHECK_THROWS_WITH(pld::LayerStep::from_plan(plan, 0, 5, -2), Catch::Matchers::Contains("outside the plan's batch"));
  // A stack refuses a shard that runs past the per-sample plan's rows.
  pcpu::SharedLayerStack<float> stack(config32(), 2);
  std::vector<float> x(static_cast<std::size_t>(3 * 8 * 32), 0.5f);
  CHECK_THROWS_WITH(stack.forward(x.data(), 3, 8, nullptr, plan, 5, {}, 2), Catch::Matchers::Contains("from row 2"));
}

TEMPLATE_TEST_CASE("A stack's shards under a per-sample plan run the plan's rows for them", "[cpu][shared-layer][dist]", double, float) {
  // Per-sample layers compact their kept rows, and the masks are keyed by the place among the
  // global batch's kept rows (LayerStep::from_plan counts those before the shard): with dropout
  // on, each shard reads its own rows of the global plan and draws the whole batch's masks.
  LayerConfig c = config32();
  REQUIRE(c.attention_dropout > 0.0f);
  REQUIRE(c.hidden_dropout > 0.0f);
  const int L = 3, B = 4, T = 8;
  pld::LayerPlan plan;
  plan.step = 5;
  plan.keep = {1, 1, 1};
  plan.scale = {1.25, 1.5, 2.0};
  plan.prob = {0.8, 0.7, 0.5};
  plan.batch = B;
  plan.sample_keep = {1, 0, 1, 1,   // layer 0: row 1 skips it
                      0, 1, 1, 0,   // layer 1
                      1, 1, 0, 1};  // layer 2
  LayerCase k;
  k.config = c;
  k.batch = B;
  k.seq = T;
  const LayerInputs in = pld::test::make_inputs<TestType>(k);
  // Rows [first, first + rows) of x through the stack, told they start at global row first_row.
  auto run = [&](int first, int rows, int first_row) {
    pcpu::SharedLayerStack<TestType> stack(c, L);
    for (int l = 0; l < L; ++l) {
      pcpu::LayerParams<double> p = in.params;  // the same weights in every layer
      set_params(stack.layer(l).params(), p);
    }
    std::vector<TestType> x = pld::test::to_storage<TestType>(rows_of(in.x, B, first, rows));
    stack.forward(x.data(), rows, T, nullptr, plan, 3, {}, first_row);
    return pld::test::from_storage(x);
  };
  const std::vector<double> whole = run(0, B, 0);
  const double tol = pld::test::bound<TestType>();
  pld::test::check_tensor(run(0, 2, 0), rows_of(whole, B, 0, 2), tol, "shard", "", "per-sample y, rows 0..1");
  pld::test::check_tensor(run(2, 2, 2), rows_of(whole, B, 2, 2), tol, "shard", "", "per-sample y, rows 2..3");
  // Not vacuous: told it starts at row 0, the second shard runs rows 0..1's layers, not its own.
  std::size_t bad = 0;
  CHECK(pld::test::rel_error(run(2, 2, 0), rows_of(whole, B, 2, 2), bad) > 10 * tol);
}
