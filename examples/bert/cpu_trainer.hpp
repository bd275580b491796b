// The CPU's trainer (trainer.hpp): pld-bert's CPU model (model.hpp) and bert::Optimizer, with
// the engine pld::cpu's products run on.
#pragma once

#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "model.hpp"
#include "optimizer.hpp"
#include "pld/cpu/gemm.hpp"
#include "trainer.hpp"

namespace bert {

// The products' engine as a line for the log: library, CPU ISA, precision.
inline std::string engine_line(pld::cpu::Precision p) {
  std::string storage = p == pld::cpu::Precision::bf16 ? ", encoder layers store bf16 (fp32 master weights)" : "";
  if (p == pld::cpu::Precision::bf16 && pld::cpu::has_onednn() && !pld::cpu::onednn_has_bf16_matmul())
    storage += "; this CPU has no bf16 matmul, so the operands are widened for the fp32 kernel (slower than --precision fp32)";
  return std::string(pld::cpu::has_onednn() ? "oneDNN" : "Eigen") + " products, CPU ISA " + pld::cpu::cpu_isa_name() + ", " +
         pld::cpu::to_string(p) + " operands, fp32 accumulation" + storage;
}

class CpuTrainer final : public Trainer {
 public:
  CpuTrainer(const ModelConfig& c, const OptimizerConfig& o) : model_(c), opt_(o, model_.params()) {}

  BertMlm& model() { return model_; }
  Optimizer& optimizer() { return opt_; }

  EngineInfo engine() override {
    const pld::cpu::Gemm& g = model_.encoder.layers().gemm();
    EngineInfo e;
    e.device = "cpu";
    e.library = pld::cpu::has_onednn() ? "oneDNN" : "Eigen";
    e.processor = pld::cpu::cpu_isa_name();
    e.precision = pld::cpu::to_string(g.precision());
    e.kernel = g.last_implementation();
    e.line = engine_line(g.precision());
    return e;
  }
  std::size_t num_parameters() const override { return model_.num_parameters(); }
  void zero_grad() override { model_.zero_grad(); }
  MlmResult step(const MlmBatch& b, const pld::LayerPlan& plan, std::uint64_t seed, bool backward, double grad_scale, int row_offset,
                 const std::function<void(int)>& layer_done) override {
    return model_.step(b, plan, seed, backward, grad_scale, row_offset, layer_done);
  }
  // A non-finite norm is a pld::Error here (Optimizer::clip): the CPU has no loss scaling.
  Norm clip() override { return {opt_.clip(model_.params()), false}; }
  void update(double lr, const pld::LayerPlan& plan) override { opt_.update(model_.params(), lr, plan); }
  void capture(Checkpoint& c) override {
    bert::capture(model_.params(), opt_, c);
    c.trainer_state.clear();
  }
  void restore(const Checkpoint& c, const std::string& what) override { bert::restore(c, model_.params(), &opt_, what); }
  double layer_seconds() const override { return model_.encoder.layer_seconds(); }
  std::vector<Gradient> gradients() override { return gradients_of(model_.params()); }

 private:
  BertMlm model_;
  Optimizer opt_;
};

}  // namespace bert
