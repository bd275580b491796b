// Every CUDA runtime and cuBLAS(Lt) status becomes a pld::Error naming the call and the status
// (tiny-cuda-nn's CUDA_CHECK_THROW). Plain C++: compiles with any host compiler that sees the
// CUDA headers.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include "pld/core/error.hpp"

namespace pld::cuda {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    pld::detail::throw_error("CUDA error in ", what, ": ", cudaGetErrorName(status), " (",
                             cudaGetErrorString(status), ")");
}

inline const char* cublas_status_name(cublasStatus_t status) {
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

inline void check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    pld::detail::throw_error("cuBLAS error in ", what, ": ", cublas_status_name(status), " (",
                             static_cast<int>(status), ")");
}

// After a kernel launch: a bad configuration shows here, not at the launch itself. (Under the
// tests' SIMT emulator nothing was launched on a device, so there is nothing to ask.)
#if defined(PLD_CUDA_EMULATION)
inline void check_launch(const char*) {}
#else
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }
#endif

// Number of CUDA devices this process can use; 0 (not an error) when there is no device or no
// driver, so tests and programs can say "skipped" instead of failing.
inline int device_count() {
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status == cudaErrorNoDevice || status == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();  // reset the runtime's last error so later checks start clean
    return 0;
  }
  check(status, "cudaGetDeviceCount");
  return n;
}

}  // namespace pld::cuda
