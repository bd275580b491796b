// The launch shapes every kernel launcher shares, and (pld/layer/launch_counts.hpp) the
// bookkeeping of what a layer puts on the stream.
#pragma once

#include <algorithm>
#include <cstdint>

#include "pld/layer/launch_counts.hpp"

// Every kernel launch: PLD_LAUNCH(grid, block, stream, kernel)(arguments). Under nvcc it is the
// triple-chevron launch; with PLD_CUDA_EMULATION (the tests' SIMT emulator, which compiles the
// kernels with a host compiler and runs each warp's 32 lanes as threads) it calls the emulator.
#if defined(PLD_CUDA_EMULATION)
#define PLD_LAUNCH(grid, block, stream, ...) ((void)(stream), ::pld::cuda::emulation::launch(grid, block, __VA_ARGS__))
#else
#define PLD_LAUNCH(grid, block, stream, ...) __VA_ARGS__<<<grid, block, 0, stream>>>
#endif

namespace pld::cuda {

using pld::LaunchCounts;

namespace detail {
constexpr int kBlock = 256;                  // threads per block of every pld kernel
constexpr int kWarpsPerBlock = kBlock / 32;  // row kernels: one warp per row

inline unsigned blocks_for(std::int64_t work, int per_block) {
  return static_cast<unsigned>((work + per_block - 1) / per_block);
}

constexpr int kColumnChunkRows = 64;  // column sums (reduce.cuh): rows per partial sum
}  // namespace detail

// Floats of scratch column_sums (reduce.cuh) needs for (rows, cols): one partial sum per chunk.
inline std::int64_t column_sums_scratch(std::int64_t rows, std::int64_t cols) {
  return (rows + detail::kColumnChunkRows - 1) / detail::kColumnChunkRows * cols;
}

// Floats of scratch layer_norm_column_sums (reduce.cuh) and so layer_norm_backward need: two
// sums' partials. A layer's scratch (scratch_needs(N, max(3H, F))) always holds it.
inline std::int64_t layer_norm_sums_scratch(std::int64_t rows, std::int64_t cols) { return 2 * column_sums_scratch(rows, cols); }

// Launch shape of column_sums' partials kernel: x covers the columns, y the row chunks up to
// CUDA's gridDim.y limit of 65535 (blocks stride over the rest), so any row count launches.
struct ColumnSumsGrid {
  unsigned x, y;
};
constexpr std::int64_t kMaxGridY = 65535;
inline ColumnSumsGrid column_sums_grid(std::int64_t rows, std::int64_t cols, std::int64_t max_y = kMaxGridY) {
  const std::int64_t chunks = (rows + detail::kColumnChunkRows - 1) / detail::kColumnChunkRows;
  return {detail::blocks_for(cols, detail::kBlock), static_cast<unsigned>(std::max<std::int64_t>(1, std::min(chunks, max_y)))};
}

}  // namespace pld::cuda
