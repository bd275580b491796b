// The GPU's trainer (trainer.hpp): pld-bert's GPU model (model_logic.hpp over cuda_backend.cuh)
// and bert::CudaOptimizer, with dynamic loss scaling when the storage is fp16. LB is the layer
// backend: pld::cuda::DeviceBackend<T> in pld-bert (cuda_trainer.cu), the SIMT emulator in the
// tests, which run pretrain.hpp's loop with this trainer against the CPU's.
//
// fp16: the micro-batch's gradient scale is multiplied by the loss scale, the optimizer divides it
// out; when the scaled gradients are not finite, clip() reports an overflow, update() changes
// nothing (no weight, moment or step count) and the scale backs off (pld::cuda::DynamicLossScale).
// Its state travels in the checkpoint's trainer state, so a resumed run continues at the same scale.
//
// The time inside the layers comes from events around the stack's passes on the stream (CUDA
// events on a GPU; CudaBackend::Layers::seconds), so pld-bert prints the same layer-time split and
// no-dropping estimate as on the CPU.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda_backend.cuh"
#include "cuda_optimizer.cuh"
#include "model_logic.hpp"
#include "pld/cuda/loss_scale.hpp"
#include "pld/cuda/storage.hpp"
#include "trainer.hpp"

namespace bert {

template <class T>
constexpr const char* storage_name() {
  if constexpr (std::is_same_v<T, float>) return "fp32";
  if constexpr (std::is_same_v<T, pld::cuda::fp16>) return "fp16";
  return "bf16";
}

template <class T, class LB>
class CudaTrainer : public Trainer {
 public:
  using Model = BasicBertMlm<CudaBackend<T, LB>>;

  // `processor`: what the engine line names (the GPU and its compute capability). `loss_scale`:
  // fp16's dynamic loss scaling (other precisions have none).
  CudaTrainer(const ModelConfig& c, const OptimizerConfig& o, std::string processor, const pld::cuda::LossScaleConfig& loss_scale = {})
      : model_(c), opt_(o, model_.params()), processor_(std::move(processor)) {
    if constexpr (std::is_same_v<T, pld::cuda::fp16>) scale_.emplace(loss_scale);
  }

  Model& model() { return model_; }
  CudaOptimizer<T, LB>& optimizer() { return opt_; }

  EngineInfo engine() override {
    EngineInfo e;
    e.device = "cuda";
    e.library = "cuBLASLt";
    e.processor = processor_;
    e.precision = storage_name<T>();
    e.line = std::string("cuBLASLt products and pld's CUDA kernels on ") + processor_ + ", " + e.precision +
             " weights and activations, fp32 accumulation, fp32 master weights" + (scale_ ? ", dynamic loss scaling" : "");
    return e;
  }
  std::size_t num_parameters() const override { return model_.num_parameters(); }
  void zero_grad() override {
    if (!zeroed_) model_.zero_grad();  // update() leaves them zero already
    zeroed_ = true;
  }
  MlmResult step(const MlmBatch& b, const pld::LayerPlan& plan, std::uint64_t seed, bool backward, double grad_scale, int row_offset,
                 const std::function<void(int)>& layer_done) override {
    if (backward) zeroed_ = false;
    const double s = scale_ ? static_cast<double>(scale_->scale()) : 1.0;
    return model_.step(b, plan, seed, backward, grad_scale * s, row_offset, layer_done);
  }
  Norm clip() override {
    const auto r = opt_.norm(scale_ ? scale_->inverse() : 1.0f);
    return {r.norm, !r.finite && scale_.has_value()};
  }
  void update(double lr, const pld::LayerPlan& plan) override {
    const bool overflow = !opt_.last_norm().finite;
    opt_.apply(lr, plan);  // zeroes the gradients
    zeroed_ = true;
    if (scale_) scale_->update(overflow);  // an overflow at the minimum scale is a pld::Error
  }
  void capture(Checkpoint& c) override {
    opt_.capture(c);
    c.trainer_state = scale_ ? scale_->save_state() : std::string();
  }
  void restore(const Checkpoint& c, const std::string& what) override {
    if (scale_ && !c.trainer_state.empty()) {
      pld::cuda::DynamicLossScale s = *scale_;
      s.restore_state(c.trainer_state);  // checked before anything changes
      opt_.restore(c, what);
      *scale_ = s;
    } else {
      opt_.restore(c, what);  // a checkpoint of another precision: a fresh loss scale
    }
  }
  double layer_seconds() const override { return model_.encoder.layer_seconds(); }
  std::vector<Gradient> gradients() override { return gradients_of(model_.params()); }
  double loss_scale() const override { return scale_ ? scale_->scale() : 1.0; }
  std::int64_t overflow_steps() const override { return scale_ ? scale_->overflows() : 0; }

 private:
  Model model_;
  CudaOptimizer<T, LB> opt_;
  std::string processor_;
  std::optional<pld::cuda::DynamicLossScale> scale_;
  bool zeroed_ = true;  // the model's gradients start zero
};

}  // namespace bert
