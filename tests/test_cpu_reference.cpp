// The CPU layer against PyTorch: golden files made by tests/reference/make_fixtures.py from
// nn.TransformerEncoderLayer(norm_first=True, and False for Post-LN, activation="gelu", dropout=0)
// in float64, for pld::cpu::PreLnLayer (the shared layer logic, since session 11) and for the
// tests' independent reference layer (tests/layer/reference_layer.hpp, the CPU layer before the
// logic was shared); and the "scale 1 == ungated" invariance against an independent composition
// of the building blocks.
//
// Tolerance rule for the golden files: both sides compute in double from the same inputs; they
// differ only in the order of operations (BLAS blocking, softmax and LayerNorm reductions), which
// costs a few ulps per operation over a depth of ~20 operations. So per tensor:
//   |ours - torch| <= 1e-11 * max(1, max|torch|)   (element-wise, scaled by the tensor's magnitude)
// A wrong index, a missing term or a float32 round trip anywhere misses this by many orders.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "layer/reference_layer.hpp"
#include "pld/cpu.hpp"

#ifndef PLD_FIXTURE_DIR
#error "PLD_FIXTURE_DIR must name tests/reference/fixtures"
#endif

using pld::cpu::LayerConfig;
using pld::cpu::LayerStep;
using pld::cpu::PreLnLayer;

namespace {

struct Fixture {
  std::map<std::string, std::vector<double>> tensors;
  const std::vector<double>& at(const std::string& name) const {
    const auto it = tensors.find(name);
    if (it == tensors.end()) FAIL("fixture has no tensor " << name);
    return it->second;
  }
};

Fixture load_fixture(const std::string& name) {
  const std::string path = std::string(PLD_FIXTURE_DIR) + "/" + name + ".txt";
  std::ifstream in(path);
  REQUIRE(in.good());
  Fixture f;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream s(line);
    std::string tname;
    int ndim = 0;
    s >> tname >> ndim;
    std::size_t count = 1;
    for (int d = 0; d < ndim; ++d) {
      std::size_t dim = 0;
      s >> dim;
      count *= dim;
    }
    std::vector<double> v(count);
    for (auto& x : v) s >> x;
    REQUIRE_FALSE(s.fail());
    f.tensors[tname] = std::move(v);
  }
  return f;
}

void check_tensor(const std::vector<double>& ours, const std::vector<double>& ref, const std::string& what) {
  REQUIRE(ours.size() == ref.size());
  double scale = 1.0;
  for (double r : ref) scale = std::max(scale, std::abs(r));
  double worst = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(ours[i] - ref[i]));
  INFO(what << ": max |ours - torch| = " << worst << ", tensor scale " << scale);
  CHECK(worst <= 1e-11 * scale);
  CHECK(worst > -1.0);  // NaN guard: a NaN fails the comparison above and this one alike
  for (double o : ours) REQUIRE(std::isfinite(o));
}

}  // namespace

TEMPLATE_TEST_CASE("CPU layer matches PyTorch TransformerEncoderLayer (norm_first true and false) in double", "[cpu][reference]",
                   PreLnLayer<double>, pld::test::ReferenceLayer<double>) {
  const std::string name = GENERATE(as<std::string>{}, "h8_n2_f32", "h8_n2_f32_padded", "h12_n3_f20_padded", "post_h8_n2_f32_padded",
                                    "post_h12_n3_f20_padded");
  INFO("fixture " << name);
  const Fixture f = load_fixture(name);
  const auto& cfgv = f.at("config");
  REQUIRE(cfgv.size() == 5);
  const int B = static_cast<int>(cfgv[0]), T = static_cast<int>(cfgv[1]);
  LayerConfig cfg;
  cfg.hidden = static_cast<int>(cfgv[2]);
  cfg.heads = static_cast<int>(cfgv[3]);
  cfg.ffn = static_cast<int>(cfgv[4]);
  cfg.ln_eps = f.at("ln_eps").at(0);
  cfg.attention_dropout = cfg.hidden_dropout = 0.0f;
  cfg.norm = name.rfind("post_", 0) == 0 ? pld::NormPosition::post : pld::NormPosition::pre;
  TestType layer(cfg);
  for (auto& t : layer.params().tensors()) {
    const auto& v = f.at("param." + t.name);
    REQUIRE(v.size() == t.size);
    std::memcpy(t.data, v.data(), v.size() * sizeof(double));
  }
  const auto& x = f.at("x");
  const auto& dy = f.at("dy");
  std::vector<std::uint8_t> valid;
  for (double v : f.at("valid")) valid.push_back(v != 0.0 ? 1 : 0);

  std::vector<double> y(x.size(), std::nan("")), dx(x.size(), std::nan(""));
  layer.grads().zero();
  layer.forward(x.data(), y.data(), B, T, valid.data(), {});
  layer.backward(dy.data(), dx.data());
  check_tensor(y, f.at("y"), "y");
  check_tensor(dx, f.at("dx"), "dx");
  for (const auto& g : layer.grads().tensors()) {
    const auto* p = static_cast<const double*>(g.data);
    check_tensor(std::vector<double>(p, p + g.size), f.at("grad." + g.name), "grad." + g.name);
  }
}

// Bit for bit for the reference layer, whose attention is attention_forward(); the shared logic
// runs other passes and product plans (until session 19 it also split the heads into their own
// buffers), so for PreLnLayer the bound is a few float ulps (its gate itself is exact at scale 1:
// x + 1 * t).
TEMPLATE_TEST_CASE("a kept layer with gate scale 1 equals the ungated composition", "[cpu][invariance]", PreLnLayer<float>,
                   pld::test::ReferenceLayer<float>) {
  using namespace pld::cpu;
  constexpr bool bitwise = std::is_same<TestType, pld::test::ReferenceLayer<float>>::value;
  const int B = 2, T = 7, H = 16, heads = 4, F = 24, N = B * T;
  LayerConfig cfg;
  cfg.hidden = H;
  cfg.heads = heads;
  cfg.ffn = F;
  cfg.attention_dropout = 0.2f;
  cfg.hidden_dropout = 0.15f;
  TestType layer(cfg);
  layer.params().init_normal(21, 0.2);
  const auto NH = static_cast<std::size_t>(N) * H;
  std::vector<float> x(NH), y(NH);
  for (std::size_t i = 0; i < NH; ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) + 0.1f;
  std::vector<std::uint8_t> valid(static_cast<std::size_t>(N), 1);
  valid[6] = valid[5] = 0;
  LayerStep s;  // kept, scale 1, training: dropout on
  s.seed = 9;
  s.step = 123;
  s.layer = 2;
  layer.forward(x.data(), y.data(), B, T, valid.data(), s);

  // The same layer written out from the building blocks, with no gate anywhere.
  const auto& p = layer.params();
  auto key = [&](DropoutSite site) { return DropoutKey{s.seed, s.step, s.layer, site}; };
  std::vector<float> ln(NH), mean(N), rstd(N), qkv(3 * NH), probs(static_cast<std::size_t>(B) * heads * T * T), dropped(probs.size()),
      ctx(NH), t(NH), h(NH), pre(static_cast<std::size_t>(N) * F), act(pre.size()), ref(NH);
  Gemm gemm;  // the layer's precision (fp32) on the same engine
  layer_norm_forward(x.data(), p.norm1_weight.data(), p.norm1_bias.data(), ln.data(), mean.data(), rstd.data(), N, H, cfg.ln_eps);
  linear_forward(gemm, ln.data(), p.in_proj_weight.data(), p.in_proj_bias.data(), qkv.data(), N, H, 3 * H);
  attention_forward(gemm, qkv.data(), valid.data(), probs.data(), dropped.data(), ctx.data(), AttentionShape{B, T, H, heads},
                    cfg.attention_dropout, key(DropoutSite::attention_probs));
  linear_forward(gemm, ctx.data(), p.out_proj_weight.data(), p.out_proj_bias.data(), t.data(), N, H, H);
  dropout_apply(t.data(), t.data(), NH, 0, cfg.hidden_dropout, key(DropoutSite::attention_out));
  for (std::size_t i = 0; i < NH; ++i) h[i] = x[i] + t[i];
  layer_norm_forward(h.data(), p.norm2_weight.data(), p.norm2_bias.data(), ln.data(), mean.data(), rstd.data(), N, H, cfg.ln_eps);
  linear_forward(gemm, ln.data(), p.linear1_weight.data(), p.linear1_bias.data(), pre.data(), N, H, F);
  gelu_forward(pre.data(), act.data(), pre.size(), cfg.gelu);
  linear_forward(gemm, act.data(), p.linear2_weight.data(), p.linear2_bias.data(), t.data(), N, F, H);
  dropout_apply(t.data(), t.data(), NH, 0, cfg.hidden_dropout, key(DropoutSite::ffn_out));
  for (std::size_t i = 0; i < NH; ++i) ref[i] = h[i] + t[i];

  if (bitwise) {
    CHECK(std::memcmp(y.data(), ref.data(), NH * sizeof(float)) == 0);
  } else {
    double worst = 0.0;
    for (std::size_t i = 0; i < NH; ++i) worst = std::max(worst, std::abs(static_cast<double>(y[i]) - ref[i]) / (1.0 + std::abs(ref[i])));
    INFO("worst |y - composition| / (1 + |composition|) = " << worst);
    CHECK(worst < 1e-5);
  }
  CHECK(y != x);  // the layer did something
}
