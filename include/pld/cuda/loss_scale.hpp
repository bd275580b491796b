// Dynamic loss scaling for fp16 training (Micikevicius et al., "Mixed Precision Training", 2018):
// the loss is multiplied by scale() before the backward so small gradients survive fp16; the
// optimizer divides it out (OptimizerHyper::inv_loss_scale) and, when the gradient norm is not
// finite, skips the step on the device (optimizer.cuh, stats[1]). The host reads that flag once
// per step and calls update(): an overflow halves the scale, `growth_interval` good steps in a
// row double it. Plain C++ (no CUDA): the same logic serves any loop. bf16 needs none of this.
#pragma once

#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "pld/core/error.hpp"

namespace pld::cuda {

struct LossScaleConfig {
  double initial = 65536.0;     // 2^16
  double growth = 2.0;          // factor after growth_interval good steps
  double backoff = 0.5;         // factor after an overflow
  int growth_interval = 2000;   // good steps in a row before growing
  double min_scale = 1.0;       // an overflow at this scale is divergence, not a range problem
  double max_scale = 16777216.0;  // 2^24

  void validate() const {
    if (!(growth > 1.0)) pld::detail::throw_error("loss scale growth must be > 1, got ", growth);
    if (!(backoff > 0.0 && backoff < 1.0)) pld::detail::throw_error("loss scale backoff must be in (0, 1), got ", backoff);
    if (growth_interval < 1) pld::detail::throw_error("loss scale growth interval must be >= 1, got ", growth_interval);
    if (!(min_scale > 0.0 && min_scale <= max_scale && std::isfinite(max_scale)))
      pld::detail::throw_error("loss scale bounds must satisfy 0 < min <= max < inf, got [", min_scale, ", ", max_scale, "]");
    if (!(initial >= min_scale && initial <= max_scale))
      pld::detail::throw_error("initial loss scale ", initial, " is outside [", min_scale, ", ", max_scale, "]");
  }
};

class DynamicLossScale {
 public:
  explicit DynamicLossScale(const LossScaleConfig& c = {}) : c_((c.validate(), c)), scale_(c.initial) {}

  float scale() const { return static_cast<float>(scale_); }
  float inverse() const { return static_cast<float>(1.0 / scale_); }
  std::int64_t overflows() const { return overflows_; }
  std::int64_t good_in_a_row() const { return good_; }
  const LossScaleConfig& config() const { return c_; }

  // After each step: `overflow` is the optimizer's flag (the step was skipped). Returns whether the
  // step counted. An overflow at the minimum scale is a pld::Error: the gradients are not finite
  // whatever the scale, so training diverged.
  bool update(bool overflow) {
    if (!overflow) {
      if (++good_ >= c_.growth_interval) {
        scale_ = std::fmin(scale_ * c_.growth, c_.max_scale);
        good_ = 0;
      }
      return true;
    }
    ++overflows_;
    good_ = 0;
    if (scale_ <= c_.min_scale)
      pld::detail::throw_error("non-finite gradients at the minimum loss scale ", c_.min_scale, " (", overflows_,
                               " overflow steps so far): training diverged");
    scale_ = std::fmax(scale_ * c_.backoff, c_.min_scale);
    return false;
  }

  // One line for a checkpoint; restore_state() refuses another format or a value out of bounds.
  std::string save_state() const {
    std::ostringstream o;
    o.precision(17);
    o << "pld-loss-scale 1 " << scale_ << ' ' << good_ << ' ' << overflows_;
    return o.str();
  }
  void restore_state(std::string_view text) {
    std::istringstream in{std::string(text)};
    std::string tag;
    int version = 0;
    double scale = 0.0;
    std::int64_t good = -1, overflows = -1;
    std::string rest;
    if (!(in >> tag >> version >> scale >> good >> overflows) || tag != "pld-loss-scale" || version != 1 || (in >> rest))
      pld::detail::throw_error("not a pld loss-scale state (expected 'pld-loss-scale 1 SCALE GOOD OVERFLOWS'): '", text, "'");
    if (!(scale >= c_.min_scale && scale <= c_.max_scale) || good < 0 || good >= c_.growth_interval || overflows < 0)
      pld::detail::throw_error("loss-scale state out of range for this configuration: '", text, "'");
    scale_ = scale;
    good_ = good;
    overflows_ = overflows;
  }

 private:
  LossScaleConfig c_;
  double scale_;
  std::int64_t good_ = 0, overflows_ = 0;
};

}  // namespace pld::cuda
