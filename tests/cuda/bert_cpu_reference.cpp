// The CPU half of tests/cuda/bert_model_case.hpp: pld-bert's CPU model on the case, compiled by
// the host compiler (pld::cpu's GEMMs stay out of CUDA translation units).
#include "bert_model_case.hpp"

#include "model.hpp"

namespace pld::test {

BertModelRun run_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const LayerPlan& plan, const std::function<float(float)>& round) {
  bert::BertMlm m(c);
  for (auto& p : m.params())
    for (std::size_t k = 0; k < p.size; ++k) p.value[k] = round(p.value[k]);
  auto values = [](const bert::Param& p) { return std::vector<float>(p.value, p.value + p.size); };
  auto grads = [](const bert::Param& p) { return std::vector<float>(p.grad, p.grad + p.size); };
  return run_bert(m, b, plan, values, grads);
}

}  // namespace pld::test
