// pld::cuda::LayerStack<T>: the gated stack of basic_layer_stack.hpp on a CUDA device (cuBLASLt
// and pld's kernels through DeviceBackend, the arena in device memory).
#pragma once

#include "pld/cuda/basic_layer_stack.hpp"
#include "pld/cuda/pre_ln_layer.cuh"

namespace pld::cuda {

template <class T>
using LayerStack = BasicLayerStack<T, DeviceBackend<T>>;

}  // namespace pld::cuda
