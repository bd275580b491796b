#include "cpu_reference.hpp"

#include "pld/cpu.hpp"
#include "reference_layer.hpp"

namespace pld::test {

void cpu_reference(const LayerConfig& config, pld::cpu::LayerParams<double>& params, const std::vector<double>& x,
                   const std::vector<double>& dy, int batch, int seq, const std::uint8_t* valid, const LayerStep& step,
                   std::vector<double>& y, std::vector<double>& dx, pld::cpu::LayerParams<double>& grads) {
  ReferenceLayer<double> layer(config);  // the independent implementation, not the shared logic
  layer.params() = params;
  y.assign(x.size(), 0.0);
  dx.assign(x.size(), 0.0);
  layer.forward(x.data(), y.data(), batch, seq, valid, step);
  layer.backward(dy.data(), dx.data());
  grads = layer.grads();
}

}  // namespace pld::test
