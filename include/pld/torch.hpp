// pld inside a LibTorch (PyTorch C++) trainer: the schedules, gate and controller of pld.hpp plus
//   - forward_layers / forward_stack: a layer stack run through a LayerPlan (dropped layers skipped,
//     gate scales passed, per-sample rows gathered with index_select and written back);
//   - release_dropped_grads: dropped layers left out of the optimizer step;
//   - EncoderLayer: a Pre-LN (or Post-LN) encoder layer module that takes the gate scale;
//   - save_controller / restore_controller / save_checkpoint / load_checkpoint: the controller's
//     state in torch::serialize archives.
// Target pld::torch (built where CMake finds Torch). The namespace is pld::libtorch: a namespace
// pld::torch would hide ::torch inside namespace pld. docs/libtorch.md shows the loop.
#pragma once

#include "pld/pld.hpp"
#include "pld/torch/archive.hpp"
#include "pld/torch/encoder_layer.hpp"
#include "pld/torch/gated_stack.hpp"
