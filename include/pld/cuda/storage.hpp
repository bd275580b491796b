// Storage types of the CUDA layer: bf16 and fp16 for training, fp32 for tests. Arithmetic is
// always fp32; these are the conversions at loads and stores, usable on host and device, and
// each type's cuBLASLt data type.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <library_types.h>

#if defined(__CUDACC__)
#define PLD_CUDA_HD __host__ __device__ inline
#else
#define PLD_CUDA_HD inline
#endif

namespace pld::cuda {

using bf16 = __nv_bfloat16;
using fp16 = __half;

template <class T>
struct Storage;

template <>
struct Storage<float> {
  static constexpr cudaDataType_t data_type = CUDA_R_32F;
  static constexpr const char* name = "fp32";
  static PLD_CUDA_HD float to_float(float v) { return v; }
  static PLD_CUDA_HD float from_float(float v) { return v; }
};

template <>
struct Storage<fp16> {
  static constexpr cudaDataType_t data_type = CUDA_R_16F;
  static constexpr const char* name = "fp16";
  static PLD_CUDA_HD float to_float(fp16 v) { return __half2float(v); }
  static PLD_CUDA_HD fp16 from_float(float v) { return __float2half_rn(v); }
};

template <>
struct Storage<bf16> {
  static constexpr cudaDataType_t data_type = CUDA_R_16BF;
  static constexpr const char* name = "bf16";
  static PLD_CUDA_HD float to_float(bf16 v) { return __bfloat162float(v); }
  static PLD_CUDA_HD bf16 from_float(float v) { return __float2bfloat16_rn(v); }
};

template <class T>
PLD_CUDA_HD float to_float(T v) { return Storage<T>::to_float(v); }
template <class T>
PLD_CUDA_HD T from_float(float v) { return Storage<T>::from_float(v); }

}  // namespace pld::cuda
