// The stack's logic moved to pld/layer/basic_layer_stack.hpp (pld::BasicLayerStack<T, Backend>),
// written once for every backend; this name stays for code that included it from here.
#pragma once

#include "pld/cuda/basic_pre_ln_layer.hpp"
#include "pld/layer/basic_layer_stack.hpp"

namespace pld::cuda {

using pld::BasicLayerStack;

}  // namespace pld::cuda
