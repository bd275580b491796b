// pld-bert's GPU trainer on a real device: cuda_trainer.cuh over pld::cuda::DeviceBackend, in the
// precision the run asked for. Compiled into pld-bert only where CUDA is (PLD_BERT_CUDA).
#include <memory>
#include <string>

#include "cuda_trainer.cuh"
#include "pld/cuda/error.hpp"
#include "pld/cuda/pre_ln_layer.cuh"

namespace bert {

std::unique_ptr<Trainer> make_cuda_trainer(const ModelConfig& c, const OptimizerConfig& o, GpuPrecision p) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0)
    pld::detail::throw_error("--device cuda: no usable CUDA device (", e != cudaSuccess ? cudaGetErrorString(e) : "none found",
                             "); use --device cpu");
  int dev = 0;
  pld::cuda::check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp prop{};
  pld::cuda::check(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
  const std::string processor = std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ")";
  if (p == GpuPrecision::bf16 && prop.major < 8)
    pld::detail::throw_error("--precision bf16 needs a GPU of compute capability 8.0 or newer; ", processor, " has ", prop.major, ".",
                             prop.minor, ": use --precision fp16 or fp32");
  switch (p) {
    case GpuPrecision::fp32:
      return std::make_unique<CudaTrainer<float, pld::cuda::DeviceBackend<float>>>(c, o, processor);
    case GpuPrecision::fp16:
      return std::make_unique<CudaTrainer<pld::cuda::fp16, pld::cuda::DeviceBackend<pld::cuda::fp16>>>(c, o, processor);
    case GpuPrecision::bf16:
      break;
  }
  return std::make_unique<CudaTrainer<pld::cuda::bf16, pld::cuda::DeviceBackend<pld::cuda::bf16>>>(c, o, processor);
}

}  // namespace bert
