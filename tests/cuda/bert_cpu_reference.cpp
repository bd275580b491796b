// The CPU half of tests/cuda/bert_model_case.hpp: pld-bert's CPU model on the case, compiled by
// the host compiler (pld::cpu's GEMMs stay out of CUDA translation units).
#include "bert_model_case.hpp"

#include "model.hpp"
#include "optimizer.hpp"

namespace pld::test {

BertModelRun run_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const LayerPlan& plan, const std::function<float(float)>& round,
                          int row_offset) {
  bert::BertMlm m(c);
  for (auto& p : m.params())
    for (std::size_t k = 0; k < p.size; ++k) p.value[k] = round(p.value[k]);
  auto values = [](const bert::Param& p) { return std::vector<float>(p.value, p.value + p.size); };
  auto grads = [](const bert::Param& p) { return std::vector<float>(p.grad, p.grad + p.size); };
  return run_bert(m, b, plan, values, grads, row_offset);
}

BertTrainRun train_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o,
                            const std::function<float(float)>& round) {
  bert::BertMlm m(c);
  for (auto& p : m.params())
    for (std::size_t k = 0; k < p.size; ++k) p.value[k] = round(p.value[k]);
  bert::Optimizer opt(o, m.params());
  auto update = [&](double lr, const LayerPlan& plan) {
    const double norm = opt.clip(m.params());
    opt.update(m.params(), lr, plan);
    m.zero_grad();
    return norm;
  };
  auto read = [&](std::size_t k) { return std::vector<float>(m.params()[k].value, m.params()[k].value + m.params()[k].size); };
  return train_bert(m, b, o, update, read);
}

namespace {
// A CPU model with bert::Optimizer whose update clips, steps and zeroes the gradients.
struct CpuTrainer {
  bert::BertMlm m;
  bert::Optimizer opt;
  CpuTrainer(const bert::ModelConfig& c, const bert::OptimizerConfig& o) : m(c), opt(o, m.params()) {}
  double update(double lr, const LayerPlan& plan) {
    const double norm = opt.clip(m.params());
    opt.update(m.params(), lr, plan);
    m.zero_grad();
    return norm;
  }
  bert::Checkpoint checkpoint() {
    bert::Checkpoint c;
    bert::capture(m.params(), opt, c);
    return bert::parse_checkpoint(bert::serialize_checkpoint(c), "the test's checkpoint");
  }
};
}  // namespace

bert::Checkpoint cpu_bert_checkpoint(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o) {
  CpuTrainer t(c, o);
  BertTrainRun r;
  train_bert_steps(t.m, b, o, 0, kBertResumeAt, [&](double lr, const LayerPlan& p) { return t.update(lr, p); }, r);
  return t.checkpoint();
}

std::pair<BertTrainRun, bert::Checkpoint> cpu_bert_resume(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o,
                                                          const bert::Checkpoint& from) {
  CpuTrainer t(c, o);
  bert::restore(from, t.m.params(), &t.opt, "the test's checkpoint");
  BertTrainRun r;
  train_bert_steps(t.m, b, o, kBertResumeAt, kBertTrainSteps, [&](double lr, const LayerPlan& p) { return t.update(lr, p); }, r);
  return {r, t.checkpoint()};
}

}  // namespace pld::test
