// Build-wide configuration shared by every pld header: the one host/device macro and the version.
// Schedules, the RNG and gate math are written once with PLD_HOST_DEVICE so plain g++ tests them
// and nvcc reuses them verbatim inside kernels.
#pragma once

#define PLD_VERSION_MAJOR 0
#define PLD_VERSION_MINOR 1
#define PLD_VERSION_PATCH 0

#if defined(__CUDACC__)
#define PLD_HOST_DEVICE __host__ __device__ inline
#else
#define PLD_HOST_DEVICE inline
#endif
