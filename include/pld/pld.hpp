// pld: progressive layer dropping. The umbrella of everything that needs neither Eigen nor CUDA:
// RNG, schedules, the gate and the trainer hooks.
#pragma once

#include "pld/core/config.hpp"
#include "pld/core/error.hpp"
#include "pld/core/philox.hpp"
#include "pld/core/random.hpp"
#include "pld/gate/gate.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/gate/sampler.hpp"
#include "pld/hooks/controller.hpp"
#include "pld/hooks/state.hpp"
#include "pld/hooks/stats.hpp"
#include "pld/layer/layer_config.hpp"
#include "pld/layer/layer_step.hpp"
#include "pld/schedule/budget.hpp"
#include "pld/schedule/depth.hpp"
#include "pld/schedule/presets.hpp"
#include "pld/schedule/schedule.hpp"
#include "pld/schedule/temporal.hpp"
