// pld's CUDA kernels as written (the .cuh files), compiled by the host compiler and run on the
// SIMT emulator (tests/cuda/simt_emulator.hpp: each warp's 32 lanes as threads, shuffles as
// exchanges), inside the real layer logic with host memory and emulated cuBLASLt products,
// against the CPU layer in double. What this proves without a GPU: the kernels' indexing, lane
// mapping, masking, warp reductions, dropout keys and rounding. What it cannot: device memory
// behaviour, races between warps, timing, cuBLASLt itself (see tests/cuda/ for the GPU tests).
#include "cuda/simt_emulator.hpp"  // first: the emulator's threadIdx, shuffles and launch

#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "cuda/host_backend.hpp"
#include "layer/layer_case.hpp"
#include "pld/cuda/pre_ln_layer.cuh"

namespace pc = pld::cuda;
using pld::LayerConfig;

namespace {

// The real kernels; host memory and emulated products around them.
template <class T>
struct SimtBackend : pc::KernelBackend<T>, pld::test::HostMemory {};

template <class T>
void run_case(const pld::test::LayerCase& k) {
  pld::test::check_layer_case<T>(
      k, [&](const pld::test::LayerInputs& in) { return pld::test::run_host_layer<T, SimtBackend<T>>(k, in); }, "simt");
}

// H = 48 > 32 columns: every lane of a row kernel holds data, so a broken reduction shows.
// F = 40 (% 8 == 0) with the erf GELU: pld's GELU kernels.
LayerConfig small() { return pld::test::test_config(48, 3, 40); }

}  // namespace

TEST_CASE("SIMT-emulated CUDA kernels in the layer match the CPU layer: fp32, dropout, padding", "[cuda-simt]") {
  pld::test::LayerCase k;
  k.config = small();
  k.batch = 2;
  k.seq = 12;
  k.padding = true;
  run_case<float>(k);
}

TEST_CASE("SIMT-emulated CUDA kernels: bf16, per-sample rows, T % 4 != 0, T > 128 (two column groups)", "[cuda-simt]") {
  pld::test::LayerCase k;
  k.config = small();
  k.config.ffn = 36;
  k.batch = 3;
  k.seq = 130;
  k.padding = true;
  k.rows = {1, 0, 1};
  run_case<pc::bf16>(k);
}

TEST_CASE("SIMT-emulated CUDA kernels: fp16, evaluation, tanh GELU epilogue path, eps 1e-12", "[cuda-simt]") {
  pld::test::LayerCase k;
  k.config = small();
  k.config.gelu = pld::GeluForm::tanh;
  k.config.ln_eps = 1e-12;
  k.training = false;
  k.batch = 2;
  k.seq = 9;
  run_case<pc::fp16>(k);
}

TEST_CASE("SIMT-emulated CUDA kernels: Post-LN, bf16, per-sample rows, padding, dropout", "[cuda-simt]") {
  pld::test::LayerCase k;
  k.config = small();
  k.config.norm = pld::NormPosition::post;
  k.batch = 3;
  k.seq = 12;
  k.padding = true;
  k.rows = {1, 1, 0};
  run_case<pc::bf16>(k);
}

TEST_CASE("SIMT-emulated CUDA kernels: long sequences (four and eight column groups per lane)", "[cuda-simt]") {
  pld::test::LayerCase k;
  k.config = small();
  k.batch = 1;
  k.padding = false;
  SECTION("T = 300, bf16") {
    k.seq = 300;
    run_case<pc::bf16>(k);
  }
  SECTION("T = 514, fp32 (T % 4 != 0)") {
    k.seq = 514;
    run_case<float>(k);
  }
}

TEST_CASE("SIMT-emulated column sums: blocks stride over row chunks beyond the grid's y extent", "[cuda-simt]") {
  // The real partials kernel on a grid whose y extent (2) is smaller than the chunk count (5), as
  // on a GPU above 65535 chunks: every chunk must still be summed exactly once.
  const int rows = 300, cols = 40;
  std::vector<float> a(static_cast<std::size_t>(rows) * cols);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<float>((i * 37) % 11) - 5.0f;
  const pc::ColumnSumsGrid g = pc::column_sums_grid(rows, cols, /*max_y=*/2);
  REQUIRE(g.y == 2u);
  const int chunks = static_cast<int>(pc::column_sums_scratch(rows, 1));
  std::vector<float> partial(static_cast<std::size_t>(pc::column_sums_scratch(rows, cols)), std::nanf(""));
  PLD_LAUNCH(dim3(g.x, g.y), pc::detail::kBlock, nullptr, pc::detail::column_partials_kernel<float>)(
      a.data(), static_cast<const float*>(nullptr), static_cast<const float*>(nullptr), static_cast<const float*>(nullptr), rows, cols,
      partial.data(), static_cast<float*>(nullptr));
  std::vector<float> out(static_cast<std::size_t>(cols), 1.0f);  // += into what is there
  PLD_LAUNCH(pc::detail::blocks_for(cols, pc::detail::kBlock), pc::detail::kBlock, nullptr, pc::detail::column_total_kernel<>)(
      partial.data(), static_cast<const float*>(nullptr), chunks, cols, out.data(), static_cast<float*>(nullptr));
  for (int c = 0; c < cols; ++c) {
    double ref = 1.0;
    for (int r = 0; r < rows; ++r) ref += a[static_cast<std::size_t>(r) * cols + c];
    INFO("column " << c);
    CHECK(out[static_cast<std::size_t>(c)] == static_cast<float>(ref));
  }
}

TEMPLATE_TEST_CASE("SIMT-emulated head split and merge: 16-byte vectors and the element-wise fallback agree with the index map",
                   "[cuda-simt]", float, pc::bf16) {
  // dim 16: vectors for both types; dim 12: vectors for fp32 only; dim 6: element-wise for both;
  // and an unaligned pointer, which must take the element-wise path.
  for (int dim : {16, 12, 6})
    for (int parts : {3, 1})
      for (int misalign : {0, 1}) {
        const pc::HeadShape s{2, 5, 3, dim, parts};
        INFO("dim " << dim << " parts " << parts << " misaligned " << misalign);
        const auto n = static_cast<std::size_t>(s.elements());
        std::vector<TestType> packed(n + 1), heads(n + 1), back(n + 1, pc::from_float<TestType>(NAN));
        for (std::size_t i = 0; i < n + 1; ++i) packed[i] = pc::from_float<TestType>(static_cast<float>(i % 1000));
        pc::LaunchCounts c;
        TestType* src = packed.data() + misalign;
        pc::split_heads(src, heads.data() + misalign, s, nullptr, c);
        bool ok = true;
        for (std::int64_t i = 0; i < s.elements(); ++i)
          ok = ok && pc::to_float(heads[static_cast<std::size_t>(i) + misalign]) == pc::to_float(src[pc::packed_offset(s, i)]);
        CHECK(ok);
        pc::merge_heads(heads.data() + misalign, back.data() + misalign, s, nullptr, c);
        bool same = true;
        for (std::size_t i = 0; i < n; ++i) same = same && pc::to_float(back[i + misalign]) == pc::to_float(src[i]);
        CHECK(same);
        CHECK(c.kernels == 2);
      }
}
