// Workspace of the CUDA layer: pld::Workspace and its layout (pld/layer/workspace.hpp) with the
// CUDA backend's scratch (cuBLASLt's workspace, the column sums' partials), and what the CUDA
// kernels can run. Pure host arithmetic: tested without a GPU.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

#include "pld/core/error.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"
#include "pld/layer/workspace.hpp"

namespace pld::cuda {

using pld::layer_rows;
using pld::Workspace;
using pld::WorkspaceSizes;

// The CUDA backend's part of a layer's scratch, for N rows of at most `cols` columns.
inline ScratchNeeds scratch_needs(std::int64_t rows, std::int64_t cols) {
  return {kLtWorkspaceBytes, static_cast<std::size_t>(column_sums_scratch(rows, cols))};
}

// Longest sequence the attention kernels take (one warp holds a softmax row in registers).
constexpr int kMaxAttentionSeq = 1024;

// Whether the CUDA layer can run (batch, seq): throws pld::Error naming what it cannot do.
inline void check_layer_problem(const LayerConfig& c, int batch, int seq) {
  c.validate();
  if (batch <= 0) pld::detail::throw_error("cuda::PreLnLayer: batch must be > 0, got ", batch);
  if (seq <= 0 || seq > kMaxAttentionSeq)
    pld::detail::throw_error("cuda::PreLnLayer: sequence length T must be in 1..", kMaxAttentionSeq, ", got ", seq);
  const double tokens_wide = static_cast<double>(batch) * seq * std::max(3 * c.hidden, c.ffn_size());
  if (tokens_wide > 2147483647.0)
    pld::detail::throw_error("cuda::PreLnLayer: batch * T * max(3H, F) = ", tokens_wide, " exceeds the 32-bit GEMM dimensions");
}

// What BasicPreLnLayer asks of a backend that runs pld's CUDA kernels (on a device, or on the
// tests' emulators): their stream, limits and scratch.
struct LayerTraits {
  using Stream = cudaStream_t;
  using Accum = float;
  static void check_problem(const LayerConfig& c, int batch, int seq) { check_layer_problem(c, batch, seq); }
  static ScratchNeeds scratch_needs(std::int64_t rows, std::int64_t cols) { return pld::cuda::scratch_needs(rows, cols); }
  // cuBLASLt's GELU epilogues: the tanh form, F a multiple of 8 (the auxiliary matrix's ld).
  static bool fuses_gelu(GeluForm form, int ffn) { return form == GeluForm::tanh && ffn % 8 == 0; }
};

// Workspace one step of the layer needs with storage elements of `elem` bytes: zero for a
// dropped layer or a per-sample step that keeps no row.
inline WorkspaceSizes layer_workspace_sizes(const LayerConfig& c, int batch, int seq, const LayerStep& step, std::size_t elem) {
  check_layer_problem(c, batch, seq);
  const int rows = layer_rows(batch, step);
  if (rows == 0) return {};
  const auto L = pld::detail::WorkspaceLayout::make(c, rows, seq, elem, sizeof(float), step.rows != nullptr, scratch_needs);
  return {L.saved_bytes, L.scratch_bytes};
}

}  // namespace pld::cuda
