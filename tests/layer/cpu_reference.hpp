// The independent CPU layer in double as the shared logic's reference (GPU and CPU backends), behind a plain function so the .cu test
// never includes Eigen (nvcc compiles Eigen only with a wall of warnings).
#pragma once

#include <cstdint>
#include <vector>

#include "pld/cpu/layer_params.hpp"
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld::test {

// One forward and backward of the reference layer (reference_layer.hpp: the CPU layer as written
// before the logic was shared) in double with `params`: y, dx written, grads
// set to the parameter gradients.
void cpu_reference(const LayerConfig& config, pld::cpu::LayerParams<double>& params, const std::vector<double>& x,
                   const std::vector<double>& dy, int batch, int seq, const std::uint8_t* valid, const LayerStep& step,
                   std::vector<double>& y, std::vector<double>& dx, pld::cpu::LayerParams<double>& grads);

}  // namespace pld::test
