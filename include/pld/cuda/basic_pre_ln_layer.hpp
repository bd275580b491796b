// The layer's logic moved to pld/layer/basic_pre_ln_layer.hpp (pld::BasicPreLnLayer<T, Backend>),
// written once for every backend; this name stays for code that included it from here.
#pragma once

#include "pld/cuda/workspace.hpp"
#include "pld/layer/basic_pre_ln_layer.hpp"

namespace pld::cuda {

using pld::BasicPreLnLayer;

}  // namespace pld::cuda
