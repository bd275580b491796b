// Uses the installed pld::cuda component from plain C++ (no nvcc): the host-side workspace
// arithmetic and the CUDA runtime linked through the target.
#include <cstdio>

#include "pld/cuda/error.hpp"
#include "pld/cuda/workspace.hpp"

int main() {
  pld::LayerConfig c;
  pld::LayerStep dropped;
  dropped.kept = false;
  const auto kept = pld::cuda::layer_workspace_sizes(c, 4, 64, pld::LayerStep{}, 2);
  const auto none = pld::cuda::layer_workspace_sizes(c, 4, 64, dropped, 2);
  std::printf("cuda workspace kept %zu dropped %zu, devices %d\n", kept.saved, none.saved, pld::cuda::device_count());
  return kept.saved > 0 && none.saved == 0 ? 0 : 1;
}
