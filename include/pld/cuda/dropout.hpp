// The dropout mask as the CUDA kernels draw it: pld::DropoutMask (pld/layer/dropout_mask.hpp),
// shared by every backend of the layer.
#pragma once

#include "pld/layer/dropout_mask.hpp"

namespace pld::cuda {

using pld::DropoutMask;
using pld::make_dropout_mask;

}  // namespace pld::cuda
