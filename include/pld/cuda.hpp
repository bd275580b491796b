// pld's CUDA backend (needs nvcc, the CUDA runtime and cuBLASLt): the Pre-LN Transformer layer on
// the GPU, its kernels, and the RAII device helpers. Include from .cu files.
#pragma once

#include "pld/pld.hpp"
#include "pld/cuda/attention.cuh"
#include "pld/cuda/basic_layer_stack.hpp"
#include "pld/cuda/basic_pre_ln_layer.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/elementwise_math.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/gelu.cuh"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/layer_norm.cuh"
#include "pld/cuda/layer_params.hpp"
#include "pld/cuda/layer_stack.cuh"
#include "pld/cuda/memory.hpp"
#include "pld/cuda/pre_ln_layer.cuh"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/residual.cuh"
#include "pld/cuda/rows.cuh"
#include "pld/cuda/storage.hpp"
#include "pld/cuda/workspace.hpp"
