// pld::cpu::Gemm, the CPU backend's products, against a double reference: plain, transposed,
// batched over two strided dimensions (heads inside packed rows, as the attention runs them),
// with bias, alpha and accumulation; fp32 and bf16 operands.
//
// Tolerance rule: per product, ||C - ref||_max <= tol * (sum_k |a_ik b_kj| for the worst element).
// fp32: the reference is the double product of the same fp32 operands, so only fp32 accumulation
// differs: tol 1e-5 (K <= 300, error ~ K * 2^-24 worst case, ~sqrt(K) 2^-24 typical). bf16: the
// reference is the double product of the operands rounded to bf16 (round to nearest even), so
// the check proves "bf16 operands, fp32 accumulation" exactly, with the same 1e-5.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "pld/cpu.hpp"

using pld::cpu::Gemm;
using pld::cpu::GemmShape;
using pld::cpu::Precision;

namespace {

float round_bf16(float x) {
  const std::uint32_t u = static_cast<std::uint32_t>(pld::cpu::detail::to_bf16_bits(x)) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::vector<float> values(std::size_t n, std::uint32_t id) {
  std::vector<float> v(n);
  pld::cpu::fill_normal(v, 77, 3, id, 1.0);
  return v;
}

// The element (i, j) of op(A) op(B) for batch entry (b0, b1), in double, operands through `round`.
template <class Round>
void reference(const GemmShape& s, const std::vector<float>& a, const std::vector<float>& b, Round round, std::vector<double>& c,
               std::vector<double>& mag) {
  for (int b0 = 0; b0 < s.batch[0]; ++b0)
    for (int b1 = 0; b1 < s.batch[1]; ++b1)
      for (int i = 0; i < s.m; ++i)
        for (int j = 0; j < s.n; ++j) {
          double sum = 0, abs = 0;
          for (int k = 0; k < s.k; ++k) {
            const std::int64_t ai = b0 * s.a_batch[0] + b1 * s.a_batch[1] + (s.trans_a ? k * s.lda + i : i * s.lda + k);
            const std::int64_t bi = b0 * s.b_batch[0] + b1 * s.b_batch[1] + (s.trans_b ? j * s.ldb + k : k * s.ldb + j);
            const double p = static_cast<double>(round(a[static_cast<std::size_t>(ai)])) * round(b[static_cast<std::size_t>(bi)]);
            sum += p;
            abs += std::fabs(p);
          }
          const std::int64_t ci = b0 * s.c_batch[0] + b1 * s.c_batch[1] + i * s.ldc + j;
          c[static_cast<std::size_t>(ci)] = sum;
          mag[static_cast<std::size_t>(ci)] = abs;
        }
}

std::size_t extent(int rows, int cols, std::int64_t ld, const std::array<int, 2>& batch, const std::array<std::int64_t, 2>& bs) {
  return static_cast<std::size_t>((batch[0] - 1) * bs[0] + (batch[1] - 1) * bs[1] + (rows - 1) * ld + cols);
}

// C as read by got(i) against alpha * ref (+ bias) (+ c0 when accumulating), per element within
// 1e-5 of the products' magnitude after `rounding` (relative, for a C stored in bf16); the
// padding between rows and batch entries untouched.
template <class Got>
void expect_product(const GemmShape& s, Got got, const std::vector<float>& c0, const std::vector<double>& ref, const std::vector<double>& mag,
                    const std::vector<float>* bias, bool accumulate, float alpha, double rounding) {
  std::vector<bool> written(c0.size(), false);
  double worst = 0.0;
  for (int b0 = 0; b0 < s.batch[0]; ++b0)
    for (int b1 = 0; b1 < s.batch[1]; ++b1)
      for (int i = 0; i < s.m; ++i)
        for (int j = 0; j < s.n; ++j) {
          const auto ci = static_cast<std::size_t>(b0 * s.c_batch[0] + b1 * s.c_batch[1] + i * s.ldc + j);
          written[ci] = true;
          const double expect = alpha * ref[ci] + (bias ? (*bias)[static_cast<std::size_t>(j)] : 0.0) + (accumulate ? c0[ci] : 0.0);
          const double scale = std::fabs(alpha) * mag[ci] + std::fabs(expect) + 1e-30;
          worst = std::max(worst, (std::fabs(got(ci) - expect) - rounding * std::fabs(expect)) / scale);
        }
  CHECK(worst <= 1e-5);
  for (std::size_t i = 0; i < c0.size(); ++i)
    if (!written[i]) REQUIRE(got(i) == c0[i]);
}

void check(const GemmShape& s, Precision precision, bool bias, bool accumulate, float alpha) {
  const int ar = s.trans_a ? s.k : s.m, ac = s.trans_a ? s.m : s.k, br = s.trans_b ? s.n : s.k, bc = s.trans_b ? s.k : s.n;
  const auto a = values(extent(ar, ac, s.lda, s.batch, s.a_batch), 1), b = values(extent(br, bc, s.ldb, s.batch, s.b_batch), 2);
  const auto bias_v = values(static_cast<std::size_t>(s.n), 3);
  std::vector<float> c = values(extent(s.m, s.n, s.ldc, s.batch, s.c_batch), 4);
  const std::vector<float> c0 = c;
  std::vector<double> ref(c.size()), mag(c.size(), 0.0);
  const bool bf16 = pld::cpu::resolve_precision(precision) == Precision::bf16;
  if (bf16) reference(s, a, b, round_bf16, ref, mag);
  else reference(s, a, b, [](float x) { return x; }, ref, mag);
  Gemm gemm(precision);
  gemm.run<float>(s, a.data(), b.data(), c.data(), alpha, accumulate, bias ? bias_v.data() : nullptr);
  INFO("m " << s.m << " n " << s.n << " k " << s.k << " ta " << s.trans_a << " tb " << s.trans_b << " batch " << s.batch[0] << "x"
            << s.batch[1] << " bias " << bias << " acc " << accumulate << " alpha " << alpha << " " << gemm.last_implementation());
  expect_product(s, [&](std::size_t i) { return c[i]; }, c0, ref, mag, bias ? &bias_v : nullptr, accumulate, alpha, 0.0);
}

// The attention's products over (batch, head): Q K^T over heads inside (B*T, 3H) rows into
// (B, heads, T, T), and P V back into (B*T, H) rows; strides that are not multiples of anything
// convenient.
struct Attention {
  int B, heads, T, d;
  GemmShape qk() const {
    const int H = heads * d;
    GemmShape s;
    s.m = T, s.n = T, s.k = d, s.trans_b = true;
    s.lda = s.ldb = 3 * H, s.ldc = T;
    s.batch = {B, heads};
    s.a_batch = s.b_batch = {static_cast<std::int64_t>(T) * 3 * H, d};
    s.c_batch = {static_cast<std::int64_t>(heads) * T * T, T * T};
    return s;
  }
  GemmShape pv() const {
    const int H = heads * d;
    GemmShape s;
    s.m = T, s.n = d, s.k = T;
    s.lda = T, s.ldb = 3 * H, s.ldc = H;
    s.batch = {B, heads};
    s.a_batch = {static_cast<std::int64_t>(heads) * T * T, T * T};
    s.b_batch = {static_cast<std::int64_t>(T) * 3 * H, d};
    s.c_batch = {static_cast<std::int64_t>(T) * H, d};
    return s;
  }
};

// bf16 storage (Gemm::run_bf16): A and B bf16 read in place, C bf16 or fp32, fp32 bias, against
// the double product of the same bf16 values. A bf16 C is rounded once, after the accumulation,
// so it may differ from the reference by half a bf16 ulp (2^-8 relative) besides the fp32 sum.
void check_bf16_storage(const GemmShape& s, bool c_fp32, bool bias, bool accumulate, float alpha) {
  using pld::cpu::bf16;
  const int ar = s.trans_a ? s.k : s.m, ac = s.trans_a ? s.m : s.k, br = s.trans_b ? s.n : s.k, bc = s.trans_b ? s.k : s.n;
  auto a = values(extent(ar, ac, s.lda, s.batch, s.a_batch), 5), b = values(extent(br, bc, s.ldb, s.batch, s.b_batch), 6);
  for (auto* v : {&a, &b})
    for (float& x : *v) x = round_bf16(x);
  const auto bias_v = values(static_cast<std::size_t>(s.n), 7);
  std::vector<float> c0 = values(extent(s.m, s.n, s.ldc, s.batch, s.c_batch), 8);
  if (!c_fp32)
    for (float& x : c0) x = round_bf16(x);
  std::vector<double> ref(c0.size()), mag(c0.size(), 0.0);
  reference(s, a, b, [](float x) { return x; }, ref, mag);
  const std::vector<bf16> a16(a.begin(), a.end()), b16(b.begin(), b.end());
  std::vector<bf16> c16(c0.begin(), c0.end());
  std::vector<float> c32 = c0;
  Gemm gemm(Precision::fp32);  // bf16 storage does not depend on the Gemm's precision
  void* c = c_fp32 ? static_cast<void*>(c32.data()) : static_cast<void*>(c16.data());
  gemm.run_bf16(s, a16.data(), b16.data(), c, c_fp32, alpha, accumulate, bias ? bias_v.data() : nullptr);
  INFO("m " << s.m << " n " << s.n << " k " << s.k << " ta " << s.trans_a << " tb " << s.trans_b << " batch " << s.batch[0] << "x"
            << s.batch[1] << " C " << (c_fp32 ? "fp32" : "bf16") << " bias " << bias << " acc " << accumulate << " alpha " << alpha << " "
            << gemm.last_implementation());
  const auto got = [&](std::size_t i) { return c_fp32 ? c32[i] : static_cast<float>(c16[i]); };
  expect_product(s, got, c0, ref, mag, bias ? &bias_v : nullptr, accumulate, alpha, c_fp32 ? 0.0 : std::ldexp(1.0, -8));
}

// Every precision the build can force: fp32, bf16 (with oneDNN) and native (auto).
std::vector<Precision> precisions() {
  if (!pld::cpu::has_onednn()) return {Precision::fp32, Precision::native};
  return {Precision::fp32, Precision::bf16, Precision::native};
}

}  // namespace

TEST_CASE("Gemm: bf16 storage, operands in place, C in bf16 or fp32", "[cpu][gemm][bf16]") {
  if (!pld::cpu::has_onednn()) {
    Gemm gemm(Precision::fp32);
    const pld::cpu::bf16 x[1] = {1.0f};
    float c[1];
    CHECK_THROWS_WITH(gemm.run_bf16(GemmShape::plain(1, 1, 1, false, false), x, x, c, true), Catch::Matchers::Contains("need oneDNN"));
    return;
  }
  for (bool c_fp32 : {true, false}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        check_bf16_storage(GemmShape::plain(37, 29, 61, ta, tb), c_fp32, false, false, 1.0f);
        check_bf16_storage(GemmShape::plain(37, 29, 61, ta, tb), c_fp32, true, true, 1.0f);
        check_bf16_storage(GemmShape::plain(1, 7, 3, ta, tb), c_fp32, false, true, 0.125f);
      }
    const Attention at{2, 3, 11, 5};  // heads inside packed rows
    check_bf16_storage(at.qk(), c_fp32, false, false, 0.4f);
    check_bf16_storage(at.pv(), c_fp32, false, false, 1.0f);
    check_bf16_storage(at.pv(), c_fp32, false, true, 1.0f);
  }
}

TEST_CASE("Gemm: plain and transposed products, bias, alpha, accumulation (fp32 and bf16 operands)", "[cpu][gemm]") {
  for (const Precision precision : precisions())
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (auto [m, n, k] : {std::tuple<int, int, int>{37, 29, 61}, std::tuple<int, int, int>{128, 96, 300}, std::tuple<int, int, int>{1, 7, 3}}) {
          check(GemmShape::plain(m, n, k, ta, tb), precision, false, false, 1.0f);
          check(GemmShape::plain(m, n, k, ta, tb), precision, true, false, 1.0f);
          check(GemmShape::plain(m, n, k, ta, tb), precision, false, true, 1.0f);
          check(GemmShape::plain(m, n, k, ta, tb), precision, false, false, 0.125f);
        }
}

TEST_CASE("Gemm: products over (batch, head) read in place from packed rows", "[cpu][gemm]") {
  for (const Precision precision : precisions()) {
    const Attention at{3, 4, 13, 6};
    check(at.qk(), precision, false, false, 0.4f);
    GemmShape pv = at.pv();
    check(pv, precision, false, false, 1.0f);
    pv.trans_a = true;  // P^T dC
    check(pv, precision, false, true, 1.0f);
  }
}

TEST_CASE("Gemm: the engine, its precision and its errors", "[cpu][gemm]") {
  Gemm fp32(Precision::fp32);
  CHECK(fp32.precision() == Precision::fp32);
  const std::vector<float> a(6, 1.0f), b(6, 2.0f);
  std::vector<float> c(4);
  fp32.run<float>(GemmShape::plain(2, 2, 3, false, true), a.data(), b.data(), c.data());
  CHECK(c == std::vector<float>(4, 6.0f));
  INFO("engine: " << fp32.last_implementation() << ", CPU ISA " << pld::cpu::cpu_isa_name());
  if (pld::cpu::has_onednn()) {
    CHECK(fp32.last_implementation().find("oneDNN") == 0);
    const Precision native = pld::cpu::resolve_precision(Precision::native);
    CHECK(native == (pld::cpu::cpu_has_native_bf16() ? Precision::bf16 : Precision::fp32));
    Gemm bf16(Precision::bf16);
    bf16.run<float>(GemmShape::plain(2, 2, 3, false, true), a.data(), b.data(), c.data());
    // oneDNN 2.6 multiplies bf16 from AVX-512 up; below (AVX2: AMD EPYC Zen 3, or
    // ONEDNN_MAX_CPU_ISA=AVX2) the bf16 operands are widened for its fp32 kernel.
    const std::string& impl = bf16.last_implementation();
    CHECK(impl.find("bf16") != std::string::npos);
    CHECK((impl.find("widened") != std::string::npos) == !pld::cpu::onednn_has_bf16_matmul());
    CHECK(pld::cpu::onednn_has_bf16_matmul() == (pld::cpu::cpu_isa_name().rfind("avx512", 0) == 0));
    CHECK(c == std::vector<float>(4, 6.0f));
  } else {
    CHECK_THROWS_WITH(Gemm(Precision::bf16), Catch::Matchers::Contains("need oneDNN"));
  }
  CHECK_THROWS_WITH(fp32.run<float>(GemmShape::plain(0, 2, 3, false, false), a.data(), b.data(), c.data()),
                    Catch::Matchers::Contains("dimensions must be > 0"));
  GemmShape bad = GemmShape::plain(2, 2, 3, false, false);
  bad.lda = 2;
  CHECK_THROWS_WITH(fp32.run<float>(bad, a.data(), b.data(), c.data()), Catch::Matchers::Contains("leading dimension"));
  CHECK(pld::cpu::parse_precision("auto") == Precision::native);
  CHECK_THROWS_WITH(pld::cpu::parse_precision("fp8"), Catch::Matchers::Contains("fp32, bf16 or auto"));
}
