// pld's CPU backend (needs Eigen 3.3+; oneDNN where found): the Pre-LN Transformer layer and its parts.
#pragma once

#include "pld/pld.hpp"
#include "pld/cpu/attention.hpp"
#include "pld/cpu/dropout.hpp"
#include "pld/cpu/eigen_maps.hpp"
#include "pld/cpu/gelu.hpp"
#include "pld/cpu/gemm.hpp"
#include "pld/cpu/layer_backend.hpp"
#include "pld/cpu/layer_norm.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/cpu/linear.hpp"
#include "pld/cpu/pre_ln_layer.hpp"
