// The CUDA part's host-side logic, checked without a GPU (plain g++ against the CUDA headers and
// runtime library): status translation, the dropout mask and scalar math the kernels share with
// the CPU layer, the head-split index map, workspace sizes and problem checks.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "pld/cpu/dropout.hpp"
#include "pld/cpu/gelu.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/elementwise_math.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/loss_scale.hpp"
#include "pld/cuda/memory.hpp"
#include "pld/cuda/storage.hpp"
#include "pld/cuda/workspace.hpp"
#include "cuda/host_backend.hpp"

using Catch::Matchers::Contains;
namespace pc = pld::cuda;

TEST_CASE("CUDA and cuBLAS statuses become pld::Error naming the call", "[cuda-host]") {
  CHECK_NOTHROW(pc::check(cudaSuccess, "fine"));
  CHECK_NOTHROW(pc::check(CUBLAS_STATUS_SUCCESS, "fine"));
  CHECK_THROWS_WITH(pc::check(cudaErrorInvalidValue, "cudaMemcpy"),
                    Contains("cudaMemcpy") && Contains("cudaErrorInvalidValue"));
  CHECK_THROWS_AS(pc::check(cudaErrorMemoryAllocation, "x"), pld::Error);
  CHECK_THROWS_WITH(pc::check(CUBLAS_STATUS_NOT_SUPPORTED, "cublasLtMatmul"),
                    Contains("cublasLtMatmul") && Contains("CUBLAS_STATUS_NOT_SUPPORTED"));
}

TEST_CASE("Device memory: an error without a device, a usable buffer with one", "[cuda-host]") {
  if (pc::device_count() == 0) {
    CHECK_THROWS_WITH(pc::DeviceBuffer(1024), Contains("cudaMalloc"));
  } else {
    pc::DeviceBuffer b(1024);
    CHECK(b.bytes() == 1024);
    CHECK(b.data() != nullptr);
    pc::DeviceBuffer moved(std::move(b));
    CHECK(moved.bytes() == 1024);
    CHECK(b.data() == nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty by contract
  }
}

TEST_CASE("The kernels' dropout mask is the CPU layer's, element for element", "[cuda-host]") {
  pld::LayerStep step;
  step.seed = 0x1234abcdULL;
  step.step = 77;
  step.layer = 5;
  const float rate = 0.3f;
  for (pld::DropoutSite site : {pld::DropoutSite::attention_probs, pld::DropoutSite::ffn_out}) {
    const pc::DropoutMask mask = pc::make_dropout_mask(step, site, rate);
    for (std::size_t offset : {std::size_t{0}, std::size_t{3}, std::size_t{4097}}) {
      const std::size_t n = 1001;
      std::vector<float> ones(n, 1.0f), cpu(n);
      pld::cpu::dropout_apply(ones.data(), cpu.data(), n, offset, rate, pld::cpu::DropoutKey{step.seed, step.step, step.layer, site});
      std::size_t kept = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const bool keep = mask.keeps(offset + i);
        REQUIRE(keep == (cpu[i] != 0.0f));
        kept += keep;
        // apply() scales as the CPU layer does in float.
        REQUIRE(mask.apply(1.0f, offset + i) == cpu[i]);
      }
      CHECK(kept > n / 2);
      CHECK(kept < n * 9 / 10);
      // keeps4 agrees with keeps on aligned and unaligned starts.
      for (std::uint64_t e0 : {std::uint64_t{8}, std::uint64_t{9}, std::uint64_t{4098}}) {
        bool k[4];
        mask.keeps4(e0, k);
        for (int w = 0; w < 4; ++w) REQUIRE(k[w] == mask.keeps(e0 + static_cast<std::uint64_t>(w)));
      }
    }
  }
  SECTION("evaluation turns dropout off") {
    step.training = false;
    const pc::DropoutMask mask = pc::make_dropout_mask(step, pld::DropoutSite::attention_out, rate);
    CHECK_FALSE(mask.active());
    for (std::uint64_t e = 0; e < 64; ++e) REQUIRE(mask.apply(2.5f, e) == 2.5f);
  }
}

TEST_CASE("Kernel GELU (fp32) matches the CPU layer's GELU in double", "[cuda-host]") {
  for (pld::GeluForm form : {pld::GeluForm::erf, pld::GeluForm::tanh}) {
    std::vector<double> x, y(401), ones(401, 1.0), dy(401);
    for (int i = 0; i <= 400; ++i) x.push_back(-8.0 + 0.04 * i);
    pld::cpu::gelu_forward(x.data(), y.data(), x.size(), form);
    pld::cpu::gelu_backward(ones.data(), x.data(), dy.data(), x.size(), form);
    for (std::size_t i = 0; i < x.size(); ++i) {
      const auto v = static_cast<float>(x[i]);
      REQUIRE_THAT(static_cast<double>(pc::gelu_value(v, form)), Catch::Matchers::WithinAbs(y[i], 2e-6 + 2e-6 * std::abs(y[i])));
      REQUIRE_THAT(static_cast<double>(pc::gelu_grad(v, form)), Catch::Matchers::WithinAbs(dy[i], 2e-6 + 2e-6 * std::abs(dy[i])));
    }
  }
}

TEST_CASE("Head split index map: head-major (part, b, head, t, i) onto packed (b*T + t, part*H + head*d + i)", "[cuda-host]") {
  const pc::HeadShape s{2, 3, 4, 5, 3};  // B, T, heads, d, parts
  const int H = s.heads * s.dim;
  std::set<std::int64_t> seen;
  std::int64_t idx = 0;
  for (int part = 0; part < s.parts; ++part)
    for (int b = 0; b < s.batch; ++b)
      for (int h = 0; h < s.heads; ++h)
        for (int t = 0; t < s.seq; ++t)
          for (int i = 0; i < s.dim; ++i, ++idx) {
            const std::int64_t expect = (static_cast<std::int64_t>(b) * s.seq + t) * (3 * H) + part * H + h * s.dim + i;
            REQUIRE(pc::packed_offset(s, idx) == expect);
            seen.insert(expect);
          }
  CHECK(idx == s.elements());
  CHECK(static_cast<std::int64_t>(seen.size()) == s.elements());  // a bijection
}

TEST_CASE("Storage conversions round to nearest", "[cuda-host]") {
  CHECK(pc::to_float(pc::from_float<pc::bf16>(1.0f + 1.0f / 512)) == 1.0f);  // below half an ulp (2^-7)
  CHECK(pc::to_float(pc::from_float<pc::bf16>(-3.5f)) == -3.5f);
  CHECK(pc::to_float(pc::from_float<pc::fp16>(1.0f + 1.0f / 4096)) == 1.0f);  // half an ulp is 2^-11
  CHECK_THAT(pc::to_float(pc::from_float<pc::fp16>(0.1f)), Catch::Matchers::WithinRel(0.1f, 1.0f / 2048));
  CHECK(pc::Storage<pc::bf16>::data_type == CUDA_R_16BF);
  CHECK(pc::Storage<pc::fp16>::data_type == CUDA_R_16F);
}

namespace {
pld::LayerConfig small_config() {
  pld::LayerConfig c;
  c.hidden = 64;
  c.heads = 4;
  c.ffn = 0;
  return c;
}
}  // namespace

TEST_CASE("Workspace: a dropped layer needs none, a kept one what its buffers add up to", "[cuda-host]") {
  const pld::LayerConfig c = small_config();
  pld::LayerStep kept;
  pld::LayerStep dropped;
  dropped.kept = false;
  const auto none = pc::layer_workspace_sizes(c, 8, 32, dropped, 2);
  CHECK(none.saved == 0);
  CHECK(none.scratch == 0);

  std::uint8_t no_rows[4] = {0, 0, 0, 0};
  pld::LayerStep empty = kept;
  empty.rows = no_rows;
  CHECK(pc::layer_workspace_sizes(c, 4, 32, empty, 2).saved == 0);

  // Saved bytes, counted by hand: 5 (N, H) + q, k, v + P + pre, act in storage, 4 fp32 per token.
  const std::size_t B = 8, T = 32, N = B * T, H = 64, F = 256, heads = 4, elem = 2;
  const std::size_t expect = elem * (5 * N * H + 3 * N * H + B * heads * T * T + 2 * N * F) + 4 * 4 * N;
  const auto sz = pc::layer_workspace_sizes(c, static_cast<int>(B), static_cast<int>(T), kept, elem);
  CHECK(sz.saved >= expect);
  CHECK(sz.saved <= expect + 13 * 256);  // per-buffer alignment
  CHECK(sz.scratch >= pc::kLtWorkspaceBytes);
  CHECK(pc::layer_workspace_sizes(c, static_cast<int>(B), static_cast<int>(T), kept, 4).saved > sz.saved);
  CHECK(pc::layer_workspace_sizes(c, 2 * static_cast<int>(B), static_cast<int>(T), kept, elem).saved > sz.saved);

  // Per-sample: two of four rows kept costs what a batch of two does, plus the row index.
  std::uint8_t rows[4] = {1, 0, 0, 1};
  pld::LayerStep ps = kept;
  ps.rows = rows;
  const auto two = pc::layer_workspace_sizes(c, 2, 32, kept, elem);
  const auto ps_sizes = pc::layer_workspace_sizes(c, 4, 32, ps, elem);
  CHECK(ps_sizes.saved == two.saved + 256);
  CHECK(ps_sizes.scratch > two.scratch);
}

TEST_CASE("Problems the CUDA layer cannot run are one clear error", "[cuda-host]") {
  const pld::LayerConfig c = small_config();
  CHECK_NOTHROW(pc::check_layer_problem(c, 4, 1024));
  CHECK_THROWS_WITH(pc::check_layer_problem(c, 4, 1025), Contains("1..1024"));
  CHECK_THROWS_WITH(pc::check_layer_problem(c, 0, 16), Contains("batch must be > 0"));
  pld::LayerConfig bad = c;
  bad.heads = 5;
  CHECK_THROWS_WITH(pc::check_layer_problem(bad, 4, 16), Contains("divisible by heads"));
  bad = c;
  bad.hidden = 1 << 16;
  CHECK_THROWS_WITH(pc::check_layer_problem(bad, 1024, 1024), Contains("32-bit"));
  pld::LayerConfig post = c;
  post.norm = pld::NormPosition::post;  // the shared layer logic runs both
  CHECK_NOTHROW(pc::check_layer_problem(post, 4, 16));
}

TEST_CASE("Column sums launch within CUDA's grid limits for any row count", "[cuda-host]") {
  // gridDim.y may not exceed 65535; 64 rows per chunk put the old one-chunk-per-block grid past
  // it at 4,194,305 rows (e.g. 32 x 512 tokens x 256 sequences with H < 171), which
  // check_layer_problem allows when max(3H, F) < 512.
  for (std::int64_t rows : {std::int64_t(1), std::int64_t(64), std::int64_t(65), std::int64_t(4194304), std::int64_t(4194305),
                            std::int64_t(2147483647)}) {
    const pc::ColumnSumsGrid g = pc::column_sums_grid(rows, 3 * 128);
    INFO("rows " << rows);
    CHECK(g.y >= 1);
    CHECK(g.y <= 65535u);
    CHECK(g.y == std::min<std::int64_t>(65535, (rows + 63) / 64));
    CHECK(g.x == 2u);  // 384 columns, 256 threads per block
  }
}

TEST_CASE("GEMM problems are checked before cuBLASLt sees them", "[cuda-host]") {
  pc::GemmProblem p = pc::row_major_linear(128, 64, 192, CUDA_R_16BF, CUBLAS_COMPUTE_32F);
  CHECK_NOTHROW(p.check());
  CHECK(p.trans_a);
  CHECK(p.m == 192);
  CHECK(p.n == 128);
  CHECK(p.k == 64);
  pc::GemmProblem bad = p;
  bad.lda = 10;
  CHECK_THROWS_WITH(bad.check(), Contains("leading dimension"));
  bad = p;
  bad.epilogue = pc::Epilogue::bias_gelu_aux;
  bad.aux_ld = 190;
  CHECK_THROWS_WITH(bad.check(), Contains("multiple of 8"));
  bad.aux_ld = 192;
  CHECK_NOTHROW(bad.check());
  CHECK(pc::detail::pow2_alignment(0) == 256);
  CHECK(pc::detail::pow2_alignment(4160) == 64);  // a batch stride of 130 x 16 bf16 elements
  CHECK(pc::detail::pow2_alignment(1024) == 256);
  CHECK(pc::detail::pow2_alignment(6) == 2);
  pc::GemmProblem batched = pc::heads_a_bt(32, 128, 64, CUDA_R_16BF, CUDA_R_32F, CUBLAS_COMPUTE_32F);
  CHECK_NOTHROW(batched.check());
  batched.epilogue = pc::Epilogue::bias;
  CHECK_THROWS_WITH(batched.check(), Contains("unbatched"));
}

TEST_CASE("A padding mask with an all-padding sequence is rejected on the host", "[cuda-host]") {
  const std::uint8_t ok[6] = {1, 0, 0, 1, 1, 1};
  const std::uint8_t bad[6] = {1, 1, 1, 0, 0, 0};
  CHECK_NOTHROW(pld::check_valid_mask(ok, 2, 3));
  CHECK_THROWS_WITH(pld::check_valid_mask(bad, 2, 3), Contains("sequence 1 has no real token"));
}

// The GEMM builders and the operand order the layer passes to run(), the part of the GPU code
// easiest to get wrong, on tests/cuda/host_backend.hpp's emulation of cublasLtMatmul's
// column-major semantics (double operands, so exact to rounding).
namespace {
void emulate(pc::GemmProblem p, float alpha, const std::vector<double>& A, const std::vector<double>& B, float beta,
             std::vector<double>& D) {
  p.ab_type = p.d_type = CUDA_R_64F;
  pld::test::HostPlan plan(pld::test::HostHandle{}, p);
  plan.run(pld::test::HostHandle{}, alpha, A.data(), B.data(), beta, D.data(), nullptr, nullptr, nullptr, nullptr);
}

std::vector<double> random_matrix(std::size_t n, std::uint32_t id) {
  std::vector<double> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = pld::uniform01(3, 0, pld::RandomStream::param_init, id, static_cast<std::uint32_t>(i)) - 0.5;
  return v;
}

// Row-major (rows x cols) product helpers for the expected values.
double rm(const std::vector<double>& m, int cols, int r, int c, std::size_t base = 0) {
  return m[base + static_cast<std::size_t>(r) * static_cast<std::size_t>(cols) + static_cast<std::size_t>(c)];
}
}  // namespace

TEST_CASE("GEMM builders: row-major layer products in cuBLASLt's column-major terms", "[cuda-host]") {
  const int N = 5, in = 4, out = 3;
  const auto X = random_matrix(static_cast<std::size_t>(N) * in, 1);     // (N, in)
  const auto W = random_matrix(static_cast<std::size_t>(out) * in, 2);   // (out, in)
  const auto dY = random_matrix(static_cast<std::size_t>(N) * out, 3);   // (N, out)
  SECTION("y = x W^T: run(W, x)") {
    std::vector<double> Y(static_cast<std::size_t>(N) * out, 0.0);
    emulate(pc::row_major_linear(N, in, out, CUDA_R_32F, CUBLAS_COMPUTE_32F), 1.0f, W, X, 0.0f, Y);
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < out; ++o) {
        double s = 0;
        for (int k = 0; k < in; ++k) s += rm(X, in, n, k) * rm(W, in, o, k);
        REQUIRE_THAT(rm(Y, out, n, o), Catch::Matchers::WithinAbs(s, 1e-12));
      }
  }
  SECTION("dx = dy W: run(W, dy)") {
    std::vector<double> dX(static_cast<std::size_t>(N) * in, 0.0);
    emulate(pc::row_major_linear_dgrad(N, in, out, CUDA_R_32F, CUBLAS_COMPUTE_32F), 1.0f, W, dY, 0.0f, dX);
    for (int n = 0; n < N; ++n)
      for (int i = 0; i < in; ++i) {
        double s = 0;
        for (int o = 0; o < out; ++o) s += rm(dY, out, n, o) * rm(W, in, o, i);
        REQUIRE_THAT(rm(dX, in, n, i), Catch::Matchers::WithinAbs(s, 1e-12));
      }
  }
  SECTION("dW += dy^T x (beta 1): run(x, dy)") {
    std::vector<double> dW(static_cast<std::size_t>(out) * in, 0.25);
    emulate(pc::row_major_linear_wgrad(N, in, out, CUDA_R_32F, CUBLAS_COMPUTE_32F), 1.0f, X, dY, 1.0f, dW);
    for (int o = 0; o < out; ++o)
      for (int i = 0; i < in; ++i) {
        double s = 0.25;
        for (int n = 0; n < N; ++n) s += rm(dY, out, n, o) * rm(X, in, n, i);
        REQUIRE_THAT(rm(dW, in, o, i), Catch::Matchers::WithinAbs(s, 1e-12));
      }
  }
}

TEST_CASE("GEMM builders: batched head products in cuBLASLt's column-major terms", "[cuda-host]") {
  const int batch = 3, T = 4, d = 2;
  const std::size_t Td = static_cast<std::size_t>(T) * d, TT = static_cast<std::size_t>(T) * T;
  const auto Q = random_matrix(batch * Td, 4), K = random_matrix(batch * Td, 5);  // (batch, T, d)
  const auto P = random_matrix(batch * TT, 6);                                    // (batch, T, T)
  SECTION("S = Q K^T (scaled): run(K, Q)") {
    std::vector<double> S(batch * TT, 0.0);
    emulate(pc::heads_a_bt(batch, T, d, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F), 0.5f, K, Q, 0.0f, S);
    for (int b = 0; b < batch; ++b)
      for (int i = 0; i < T; ++i)
        for (int j = 0; j < T; ++j) {
          double s = 0;
          for (int e = 0; e < d; ++e) s += rm(Q, d, i, e, b * Td) * rm(K, d, j, e, b * Td);
          REQUIRE_THAT(rm(S, T, i, j, b * TT), Catch::Matchers::WithinAbs(0.5 * s, 1e-12));
        }
  }
  SECTION("C = P V: run(V, P)") {
    std::vector<double> C(batch * Td, 0.0);
    emulate(pc::heads_p_v(batch, T, d, CUDA_R_32F, CUBLAS_COMPUTE_32F), 1.0f, K, P, 0.0f, C);
    for (int b = 0; b < batch; ++b)
      for (int i = 0; i < T; ++i)
        for (int e = 0; e < d; ++e) {
          double s = 0;
          for (int j = 0; j < T; ++j) s += rm(P, T, i, j, b * TT) * rm(K, d, j, e, b * Td);
          REQUIRE_THAT(rm(C, d, i, e, b * Td), Catch::Matchers::WithinAbs(s, 1e-12));
        }
  }
  SECTION("G = P^T V: run(V, P)") {
    std::vector<double> G(batch * Td, 0.0);
    emulate(pc::heads_pt_v(batch, T, d, CUDA_R_32F, CUBLAS_COMPUTE_32F), 1.0f, K, P, 0.0f, G);
    for (int b = 0; b < batch; ++b)
      for (int j = 0; j < T; ++j)
        for (int e = 0; e < d; ++e) {
          double s = 0;
          for (int i = 0; i < T; ++i) s += rm(P, T, i, j, b * TT) * rm(K, d, i, e, b * Td);
          REQUIRE_THAT(rm(G, d, j, e, b * Td), Catch::Matchers::WithinAbs(s, 1e-12));
        }
  }
}

// The layer's products (pld::MatMul, row-major) through ProductPlan: the translation to
// cuBLASLt's column-major problem and the operand swap, for every transpose combination, padded
// leading dimensions, batches and the bias epilogue, against the row-major definition itself.
TEST_CASE("ProductPlan runs a row-major MatMul as its definition says", "[cuda-host]") {
  using Plan = pc::ProductPlan<float, pld::test::HostPlan, pld::test::HostHandle>;
  const pld::test::HostHandle handle;
  const int m = 3, n = 5, k = 4, pad = 2;
  for (int batch : {1, 3})
    for (int tx = 0; tx < 2; ++tx)
      for (int ty = 0; ty < 2; ++ty)
        for (int with_bias = 0; with_bias < (batch == 1 ? 2 : 1); ++with_bias) {
          pld::MatMul mm;
          mm.m = m; mm.n = n; mm.k = k;
          mm.trans_x = tx == 1; mm.trans_y = ty == 1;
          mm.ldx = mm.cols_x() + pad; mm.ldy = mm.cols_y() + pad; mm.ldd = n + pad;
          mm.batch = batch;
          mm.stride_x = mm.rows_x() * mm.ldx; mm.stride_y = mm.rows_y() * mm.ldy; mm.stride_d = m * mm.ldd;
          if (with_bias) mm.epilogue = pld::Epilogue::bias;
          INFO("batch " << batch << " trans_x " << tx << " trans_y " << ty << " bias " << with_bias);
          auto to_float = [](const std::vector<double>& v) { return std::vector<float>(v.begin(), v.end()); };
          const auto X = to_float(random_matrix(static_cast<std::size_t>(batch * mm.stride_x), 11));
          const auto Y = to_float(random_matrix(static_cast<std::size_t>(batch * mm.stride_y), 12));
          const auto bias = to_float(random_matrix(static_cast<std::size_t>(n), 13));
          std::vector<float> D = to_float(random_matrix(static_cast<std::size_t>(batch * mm.stride_d), 14));
          const std::vector<float> D0 = D;
          Plan plan(handle, mm);
          plan.run(handle, 0.5f, X.data(), Y.data(), 2.0f, D.data(), with_bias ? bias.data() : nullptr, nullptr, nullptr, nullptr);
          for (int b = 0; b < batch; ++b)
            for (int i = 0; i < m; ++i)
              for (int j = 0; j < n; ++j) {
                double s = 0;
                for (int e = 0; e < k; ++e) {
                  const double x = X[static_cast<std::size_t>(b * mm.stride_x + (tx ? e * mm.ldx + i : i * mm.ldx + e))];
                  const double y = Y[static_cast<std::size_t>(b * mm.stride_y + (ty ? j * mm.ldy + e : e * mm.ldy + j))];
                  s += x * y;
                }
                const std::size_t at = static_cast<std::size_t>(b * mm.stride_d + i * mm.ldd + j);
                const double want = 0.5 * s + 2.0 * D0[at] + (with_bias ? bias[static_cast<std::size_t>(j)] : 0.0);
                REQUIRE_THAT(D[at], Catch::Matchers::WithinAbs(want, 1e-6));
              }
          // The padding between rows is left alone.
          for (int b = 0; b < batch; ++b)
            for (int i = 0; i < m; ++i)
              for (int j = n; j < mm.ldd; ++j) {
                const std::size_t at = static_cast<std::size_t>(b * mm.stride_d + i * mm.ldd + j);
                REQUIRE(D[at] == D0[at]);
              }
        }
}

TEST_CASE("MatMul descriptions are checked before a backend sees them", "[cuda-host]") {
  pld::MatMul p = pld::linear_product(128, 64, 192);
  CHECK_NOTHROW(p.check());
  pld::MatMul bad = p;
  bad.ldy = 10;
  CHECK_THROWS_WITH(bad.check(), Contains("leading dimension"));
  bad = pld::with_epilogue(p, pld::Epilogue::bias_gelu_aux, 190);
  CHECK_THROWS_WITH(bad.check(), Contains("multiple of 8"));
  CHECK_NOTHROW(pld::with_epilogue(p, pld::Epilogue::bias_gelu_aux, 192).check());
  bad = pld::with_epilogue(pld::heads_abt_product(32, 128, 64, true), pld::Epilogue::bias);
  CHECK_THROWS_WITH(bad.check(), Contains("unbatched"));
  bad = p;
  bad.k = 0;
  CHECK_THROWS_WITH(bad.check(), Contains("must be > 0"));
  // ProductPlan checks the description before translating it.
  CHECK_THROWS_WITH((pc::ProductPlan<float, pld::test::HostPlan, pld::test::HostHandle>(pld::test::HostHandle{}, bad)),
                    Contains("must be > 0"));
  // Two batch dimensions (heads read in place, the CPU's) are one clear error for cuBLASLt.
  const pld::MatMul heads = pld::heads_in_place_product(2, 4, 16, 16, 8, false, true, pld::packed_heads_operand(16, 8, 96),
                                                        pld::packed_heads_operand(16, 8, 96), pld::square_heads_operand(4, 16), true);
  CHECK_NOTHROW(heads.check());
  CHECK_THROWS_WITH((pc::ProductPlan<float, pld::test::HostPlan, pld::test::HostHandle>(pld::test::HostHandle{}, heads)),
                    Contains("two batch dimensions"));
  bad = heads;
  bad.batch2 = 0;
  CHECK_THROWS_WITH(bad.check(), Contains("batch must be > 0"));
}

TEST_CASE("Dynamic loss scale: backoff on overflow, growth after the interval, bounds, state", "[cuda-host]") {
  pld::cuda::LossScaleConfig c;
  c.initial = 1024.0;
  c.growth_interval = 3;
  c.min_scale = 1.0;
  c.max_scale = 4096.0;
  pld::cuda::DynamicLossScale s(c);
  CHECK(s.scale() == 1024.0f);
  CHECK(s.inverse() == 1.0f / 1024.0f);
  CHECK(s.update(false));
  CHECK(s.update(false));
  CHECK(s.scale() == 1024.0f);
  CHECK(s.update(false));  // third good step in a row: grows
  CHECK(s.scale() == 2048.0f);
  CHECK(!s.update(true));  // overflow: skipped, halves, the run of good steps restarts
  CHECK(s.scale() == 1024.0f);
  CHECK(s.overflows() == 1);
  CHECK(s.good_in_a_row() == 0);
  for (int i = 0; i < 9; ++i) s.update(false);
  CHECK(s.scale() == 4096.0f);  // capped at max
  const std::string state = s.save_state();
  pld::cuda::DynamicLossScale r(c);
  r.restore_state(state);
  CHECK(r.save_state() == state);
  CHECK(r.scale() == 4096.0f);
  CHECK_THROWS_WITH(r.restore_state("pld-loss-scale 1 8192 0 0"), Catch::Contains("out of range"));
  CHECK_THROWS_WITH(r.restore_state("pld-loss-scale 2 1024 0 0"), Catch::Contains("not a pld loss-scale state"));
  CHECK_THROWS_WITH(r.restore_state("pld-loss-scale 1 1024 0 0 extra"), Catch::Contains("not a pld loss-scale state"));
  CHECK(r.save_state() == state);  // refused states leave it unchanged
  // Down to the minimum, then an overflow there is divergence.
  pld::cuda::DynamicLossScale d(c);
  for (int i = 0; i < 10; ++i) d.update(true);
  CHECK(d.scale() == 1.0f);
  CHECK_THROWS_WITH(d.update(true), Catch::Contains("training diverged"));
  pld::cuda::LossScaleConfig bad = c;
  bad.backoff = 1.0;
  CHECK_THROWS_AS(pld::cuda::DynamicLossScale(bad), pld::Error);
  bad = c;
  bad.initial = 8192.0;
  CHECK_THROWS_WITH(pld::cuda::DynamicLossScale(bad), Catch::Contains("outside"));
}
