// Bookkeeping of what a layer puts on its backend's stream, so a test can prove that a dropped
// layer launches nothing.
#pragma once

#include <cstdint>

namespace pld {

struct LaunchCounts {
  std::uint64_t kernels = 0;  // the backend's own passes (pld's CUDA kernels)
  std::uint64_t gemms = 0;    // matrix products
  std::uint64_t copies = 0;   // copies on the stream
  std::uint64_t total() const { return kernels + gemms + copies; }
};

}  // namespace pld
