// Entry point of the GPU tests: without a usable CUDA device the binary reports "skipped" with
// exit code 77 (CTest's SKIP_RETURN_CODE), never a pass.

#include <cstdio>
#include <cstring>

#include <cuda_runtime_api.h>

#include "../catch_run.hpp"
#include "pld/cuda/error.hpp"

int main(int argc, char** argv) {
  // Listing touches no device: lets a machine without one check test names and filters.
  for (int i = 1; i < argc; ++i)
    if (std::strncmp(argv[i], "--list", 6) == 0) return pld::test::catch_run(argc, argv);
  int devices = 0;
  try {
    devices = pld::cuda::device_count();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pld_cuda_tests: %s: skipped\n", e.what());
    return 77;
  }
  if (devices == 0) {
    std::fprintf(stderr, "pld_cuda_tests: no CUDA device: skipped\n");
    return 77;
  }
  cudaDeviceProp prop{};
  pld::cuda::check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("pld_cuda_tests on %s (compute capability %d.%d)\n", prop.name, prop.major, prop.minor);
  return pld::test::catch_run(argc, argv);
}
