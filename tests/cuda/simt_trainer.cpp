// The SIMT emulator's GPU trainer for the loop tests (simt_trainer.hpp).
#include "simt_emulator.hpp"  // first: the emulator's threadIdx, shuffles and launch

#include "simt_trainer.hpp"

#include <memory>

#include "host_backend.hpp"
#include "cuda_trainer.cuh"
#include "pld/cuda/pre_ln_layer.cuh"

namespace pld::test {
namespace {
template <class T>
struct SimtBackend : pld::cuda::KernelBackend<T>, HostMemory {};
}  // namespace

bert::TrainerFactory simt_trainer_factory(double initial_loss_scale) {
  return [initial_loss_scale](const bert::ModelConfig& c, const bert::OptimizerConfig& o, bert::GpuPrecision p) -> std::unique_ptr<bert::Trainer> {
    const char* name = "the SIMT emulator";
    switch (p) {
      case bert::GpuPrecision::fp32:
        return std::make_unique<bert::CudaTrainer<float, SimtBackend<float>>>(c, o, name);
      case bert::GpuPrecision::fp16: {
        pld::cuda::LossScaleConfig ls;
        if (initial_loss_scale > 0) {
          ls.initial = initial_loss_scale;
          if (ls.max_scale < ls.initial) ls.max_scale = ls.initial;
        }
        return std::make_unique<bert::CudaTrainer<pld::cuda::fp16, SimtBackend<pld::cuda::fp16>>>(c, o, name, ls);
      }
      case bert::GpuPrecision::bf16:
        break;
    }
    return std::make_unique<bert::CudaTrainer<pld::cuda::bf16, SimtBackend<pld::cuda::bf16>>>(c, o, name);
  };
}

}  // namespace pld::test
