// Bookkeeping of what a layer puts on the stream, so a test can prove that a dropped layer
// launches nothing; and the launch shapes every kernel launcher shares.
#pragma once

#include <cstdint>

namespace pld::cuda {

struct LaunchCounts {
  std::uint64_t kernels = 0;  // our own kernels
  std::uint64_t gemms = 0;    // cuBLASLt matmuls
  std::uint64_t copies = 0;   // cudaMemcpyAsync on the stream
  std::uint64_t total() const { return kernels + gemms + copies; }
};

namespace detail {
constexpr int kBlock = 256;                  // threads per block of every pld kernel
constexpr int kWarpsPerBlock = kBlock / 32;  // row kernels: one warp per row

inline unsigned blocks_for(std::int64_t work, int per_block) {
  return static_cast<unsigned>((work + per_block - 1) / per_block);
}
}  // namespace detail

}  // namespace pld::cuda
