// The CPU half of tests/cuda/bert_model_case.hpp: pld-bert's CPU model on the case, compiled by
// the host compiler (pld::cpu's GEMMs stay out of CUDA translation units).
#include "bert_model_case.hpp"

#include "model.hpp"
#include "optimizer.hpp"

namespace pld::test {

BertModelRun run_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const LayerPlan& plan, const std::function<float(float)>& round) {
  bert::BertMlm m(c);
  for (auto& p : m.params())
    for (std::size_t k = 0; k < p.size; ++k) p.value[k] = round(p.value[k]);
  auto values = [](const bert::Param& p) { return std::vector<float>(p.value, p.value + p.size); };
  auto grads = [](const bert::Param& p) { return std::vector<float>(p.grad, p.grad + p.size); };
  return run_bert(m, b, plan, values, grads);
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

}  // namespace pld::test
