// pld-bert's GPU trainer (examples/bert/cuda_trainer.cuh) on the SIMT emulator, as the factory
// pretrain.hpp's loop takes for --device cuda: the real kernels, compiled by the host compiler,
// on host memory. Defined in simt_trainer.cpp (an emulation translation unit), so the tests that
// run the loop include pld::cpu and the emulator in different translation units.
#pragma once

#include "trainer.hpp"

namespace pld::test {

// `initial_loss_scale` > 0 replaces fp16's initial loss scale (and its maximum, when larger).
bert::TrainerFactory simt_trainer_factory(double initial_loss_scale = 0.0);

}  // namespace pld::test
