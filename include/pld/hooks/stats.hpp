// Running statistics of a Controller: what this step does, and what the run has done so far.
// Work is counted in "full stacks": a step that runs every layer adds 1, one that runs 9 of 12
// layers adds 0.75, so layer_work_saved() is the fraction of layer compute the schedule avoided.
#pragma once

#include <cstdint>
#include <limits>

namespace pld {

struct ControllerStats {
  // The current (last begun) step.
  std::int64_t step = -1;
  double theta = 1.0;
  int num_layers = 0;
  int layers_kept = 0;
  double expected_kept_fraction = 1.0;  // mean_l p_l(step)
  double realised_kept_fraction = 1.0;  // kept layers / L (per-sample: kept rows / (L * batch))

  // Totals over completed training steps (evaluation steps are not counted).
  std::int64_t steps_done = 0;
  double expected_work = 0.0;  // sum of expected_kept_fraction
  double realised_work = 0.0;  // sum of realised_kept_fraction
  std::int64_t tokens = 0;
  double seconds = 0.0;
  double last_loss = std::numeric_limits<double>::quiet_NaN();

  double mean_expected_kept() const { return steps_done ? expected_work / static_cast<double>(steps_done) : 1.0; }
  double mean_realised_kept() const { return steps_done ? realised_work / static_cast<double>(steps_done) : 1.0; }
  // Fraction of the layer stack's work skipped so far.
  double layer_work_saved() const { return 1.0 - mean_realised_kept(); }
  double tokens_per_second() const { return seconds > 0.0 ? static_cast<double>(tokens) / seconds : 0.0; }
};

}  // namespace pld
