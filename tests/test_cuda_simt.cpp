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
#include "cuda/layer_case.hpp"
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
