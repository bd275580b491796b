// What pretraining's loop (pretrain.hpp) needs from a model and its optimizer on one device: a
// micro-batch step, the gradient norm with clipping, the update, checkpoints, and a description
// of the engine. The loop is written once over this; cpu_trainer.hpp is the CPU's (pld::cpu,
// bert::Optimizer), cuda_trainer.cuh the GPU's (pld::cuda, bert::CudaOptimizer).
//
// Light on purpose (no GEMM, no CUDA, no JSON): both kinds of translation unit include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "mlm_data.hpp"
#include "model_config.hpp"
#include "optimizer_config.hpp"
#include "pld/gate/layer_plan.hpp"

namespace pld::dist {
class Communicator;  // pld/dist/communicator.hpp: what data-parallel ranks sum over
}

namespace bert {

// Where the products run and in what precision: the startup line, options.json, summary.json.
struct EngineInfo {
  std::string device;     // "cpu" or "cuda"
  std::string library;    // oneDNN, Eigen, cuBLASLt
  std::string processor;  // the CPU's ISA, or the GPU's name and compute capability
  std::string precision;  // of the products' operands (CPU) or of the stored activations and weights (GPU)
  std::string kernel;     // the implementation the library chose for the last product, when it says
  std::string line;       // all of it as one line for the log
};

class Trainer {
 public:
  virtual ~Trainer() = default;

  virtual EngineInfo engine() = 0;
  virtual std::size_t num_parameters() const = 0;

  // Gradients to zero: before each step's first micro-batch (update() may leave them as they are).
  virtual void zero_grad() = 0;
  // One micro-batch: forward, loss and (when `backward`) gradients accumulated, scaled by
  // grad_scale (model_logic.hpp's BasicBertMlm::step, same arguments).
  virtual MlmResult step(const MlmBatch& b, const pld::LayerPlan& plan, std::uint64_t seed, bool backward, double grad_scale = 1.0,
                         int row_offset = 0, const std::function<void(int)>& layer_done = nullptr) = 0;

  // The global gradient norm before clipping (clipping applied where it acts). `overflow`: the
  // gradients are not finite under fp16 loss scaling; update() then skips the step (it changes no
  // weight and no moment) and the scale backs off. A non-finite norm without loss scaling is
  // divergence: the loop ends the run.
  struct Norm {
    double norm = 0.0;
    bool overflow = false;
  };
  virtual Norm clip() = 0;
  // The optimizer's update at lr after clip().
  virtual void update(double lr, const pld::LayerPlan& plan) = 0;

  // The model's tensors (fp32) and the optimizer's state, in the CPU's format and names, so a
  // checkpoint resumes on either device; restore() checks every tensor first and changes nothing
  // on an error.
  virtual void capture(Checkpoint& c) = 0;
  virtual void restore(const Checkpoint& c, const std::string& what) = 0;

  // Seconds inside the encoder layers since construction (the CPU's clock; on a GPU, events on the stream).
  virtual double layer_seconds() const = 0;
  // fp16 loss scaling: the current scale and the overflow steps skipped so far (1 and 0 without).
  virtual double loss_scale() const { return 1.0; }
  virtual std::int64_t overflow_steps() const { return 0; }
  // Data parallel: every tensor's gradient in the trainer's memory (host or device) with its
  // layer (-1 outside the encoder layers), what the gradient reducer averages across the ranks.
  struct Gradient {
    int layer;
    float* data;
    std::size_t size;
  };
  virtual std::vector<Gradient> gradients() = 0;
  // Data parallel: the communicator that sums gradients() across the ranks, made from `hosts`
  // (which sums host memory) on the first call and owned by the trainer. The default is `hosts`
  // itself: gradients in host memory (the CPU, and the GPU trainer on the SIMT emulator). On a
  // GPU: NCCL over the trainer's stream (cuda_trainer.cu).
  virtual pld::dist::Communicator& gradient_communicator(pld::dist::Communicator& hosts) { return hosts; }
};

// The gradients of a model's parameter list (bert::Param, or a backend's Param with a float grad).
template <class P>
std::vector<Trainer::Gradient> gradients_of(std::vector<P>& params) {
  std::vector<Trainer::Gradient> g;
  for (P& p : params) g.push_back({p.layer, p.grad, p.size});
  return g;
}

// The precision a GPU run stores in: bf16 (the default), fp16 (with dynamic loss scaling) or fp32.
enum class GpuPrecision { bf16, fp16, fp32 };

// Makes the GPU trainer. pld-bert passes make_cuda_trainer where it was built with CUDA, nothing
// elsewhere; the tests pass one that makes it on the SIMT emulator.
using TrainerFactory = std::function<std::unique_ptr<Trainer>(const ModelConfig&, const OptimizerConfig&, GpuPrecision)>;

// The GPU trainer on the current CUDA device (cuda_trainer.cu; defined only where PLD_BERT_CUDA is).
// A machine without a usable GPU gets one pld::Error naming what CUDA said.
std::unique_ptr<Trainer> make_cuda_trainer(const ModelConfig& c, const OptimizerConfig& o, GpuPrecision p);

}  // namespace bert
