// Temporal schedules theta(t): the keep ratio as a function of the optimizer step. PLD's own is
// exponential decay, theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar (Zhang & He, 2020, eq. 6);
// constant, linear and cosine decay are baselines and alternatives. Every form may be delayed: for
// t < delay nothing is dropped (theta = 1) and the decay clock starts at t = delay.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>

#include "pld/core/config.hpp"
#include "pld/core/error.hpp"

namespace pld {

enum class TemporalKind : std::uint8_t { constant, exponential, linear, cosine };

inline const char* to_string(TemporalKind kind) {
  switch (kind) {
    case TemporalKind::constant: return "constant";
    case TemporalKind::exponential: return "exponential";
    case TemporalKind::linear: return "linear";
    case TemporalKind::cosine: return "cosine";
  }
  return "?";
}

inline TemporalKind parse_temporal_kind(std::string_view name) {
  if (name == "constant") return TemporalKind::constant;
  if (name == "exponential" || name == "exp") return TemporalKind::exponential;
  if (name == "linear") return TemporalKind::linear;
  if (name == "cosine") return TemporalKind::cosine;
  detail::throw_error("unknown temporal schedule '", std::string(name),
                      "' (expected constant, exponential, linear or cosine)");
}

// A small value type: the kind and its parameters. Build it with the named factories, which
// validate; evaluate it anywhere (host or device) with theta(step).
class TemporalSchedule {
 public:
  // No dropping: theta = 1 at every step.
  TemporalSchedule() = default;

  // theta(t) = theta for t >= delay.
  static TemporalSchedule constant(double theta, std::int64_t delay = 0) {
    check_unit("theta", theta);
    return TemporalSchedule(TemporalKind::constant, theta, 0.0, 0, checked_delay(delay));
  }

  // PLD: theta(t) = (1 - theta_bar) exp(-gamma (t - delay)) + theta_bar.
  static TemporalSchedule exponential(double theta_bar = 0.5, double gamma = 0.001,
                                      std::int64_t delay = 0) {
    check_unit("theta_bar", theta_bar);
    if (!(std::isfinite(gamma) && gamma >= 0.0))
      detail::throw_error("gamma must be finite and >= 0, got ", gamma);
    return TemporalSchedule(TemporalKind::exponential, theta_bar, gamma, 0, checked_delay(delay));
  }

  // theta falls linearly from 1 to theta_bar over `steps` steps, then stays.
  static TemporalSchedule linear(double theta_bar, std::int64_t steps, std::int64_t delay = 0) {
    check_unit("theta_bar", theta_bar);
    return TemporalSchedule(TemporalKind::linear, theta_bar, 0.0, checked_steps(steps),
                            checked_delay(delay));
  }

  // theta follows half a cosine from 1 to theta_bar over `steps` steps, then stays.
  static TemporalSchedule cosine(double theta_bar, std::int64_t steps, std::int64_t delay = 0) {
    check_unit("theta_bar", theta_bar);
    return TemporalSchedule(TemporalKind::cosine, theta_bar, 0.0, checked_steps(steps),
                            checked_delay(delay));
  }

  PLD_HOST_DEVICE double theta(std::int64_t step) const {
    if (step < delay_) return 1.0;
    const double s = static_cast<double>(step - delay_);
    switch (kind_) {
      case TemporalKind::constant: return theta_bar_;
      case TemporalKind::exponential: return (1.0 - theta_bar_) * std::exp(-gamma_ * s) + theta_bar_;
      case TemporalKind::linear:
        if (s >= static_cast<double>(steps_)) return theta_bar_;
        return 1.0 - (1.0 - theta_bar_) * (s / static_cast<double>(steps_));
      case TemporalKind::cosine:
        if (s >= static_cast<double>(steps_)) return theta_bar_;
        return theta_bar_ +
               (1.0 - theta_bar_) * 0.5 * (1.0 + std::cos(3.14159265358979323846 * s /
                                                          static_cast<double>(steps_)));
    }
    return 1.0;
  }

  // Sum of theta(t) over t in [begin, end): closed forms for constant, exponential and linear,
  // a direct sum over the decay window for cosine. Used by compute accounting and the planner.
  double sum_theta(std::int64_t begin, std::int64_t end) const {
    if (end <= begin) return 0.0;
    double total = 0.0;
    if (begin < delay_) {  // undelayed prefix keeps everything
      const std::int64_t stop = end < delay_ ? end : delay_;
      total += static_cast<double>(stop - begin);
      begin = stop;
      if (begin == end) return total;
    }
    const std::int64_t a = begin - delay_, b = end - delay_;  // decay-clock steps [a, b)
    const double n = static_cast<double>(b - a);
    switch (kind_) {
      case TemporalKind::constant: return total + theta_bar_ * n;
      case TemporalKind::exponential: {
        if (gamma_ == 0.0) return total + n;
        // sum_{s=a}^{b-1} e^{-g s} = e^{-g a} (1 - e^{-g n}) / (1 - e^{-g}), with expm1 for small g
        const double geometric =
            std::exp(-gamma_ * static_cast<double>(a)) * std::expm1(-gamma_ * n) / std::expm1(-gamma_);
        return total + theta_bar_ * n + (1.0 - theta_bar_) * geometric;
      }
      case TemporalKind::linear: {
        const std::int64_t ramp_end = b < steps_ ? b : steps_;
        double ramp = 0.0;
        if (a < ramp_end) {  // sum_{s=a}^{e-1} (1 - (1-tb) s / T)
          const double m = static_cast<double>(ramp_end - a);
          const double sum_s = (static_cast<double>(a) + static_cast<double>(ramp_end - 1)) * m / 2.0;
          ramp = m - (1.0 - theta_bar_) * sum_s / static_cast<double>(steps_);
        }
        const std::int64_t flat_begin = a > steps_ ? a : steps_;
        const double flat = b > flat_begin ? theta_bar_ * static_cast<double>(b - flat_begin) : 0.0;
        return total + ramp + flat;
      }
      case TemporalKind::cosine: {
        double sum = 0.0;
        const std::int64_t ramp_end = b < steps_ ? b : steps_;
        for (std::int64_t s = a; s < ramp_end; ++s) sum += theta(s + delay_);
        const std::int64_t flat_begin = a > steps_ ? a : steps_;
        if (b > flat_begin) sum += theta_bar_ * static_cast<double>(b - flat_begin);
        return total + sum;
      }
    }
    return total;
  }

  PLD_HOST_DEVICE TemporalKind kind() const { return kind_; }
  // The floor theta decays to (the constant value for `constant`).
  PLD_HOST_DEVICE double theta_bar() const { return theta_bar_; }
  PLD_HOST_DEVICE double gamma() const { return gamma_; }
  // Length of the decay for linear and cosine; 0 otherwise.
  PLD_HOST_DEVICE std::int64_t steps() const { return steps_; }
  PLD_HOST_DEVICE std::int64_t delay() const { return delay_; }
  // True when theta(t) = 1 for every t.
  PLD_HOST_DEVICE bool never_drops() const { return theta_bar_ == 1.0; }

  friend bool operator==(const TemporalSchedule& a, const TemporalSchedule& b) {
    return a.kind_ == b.kind_ && a.theta_bar_ == b.theta_bar_ && a.gamma_ == b.gamma_ &&
           a.steps_ == b.steps_ && a.delay_ == b.delay_;
  }
  friend bool operator!=(const TemporalSchedule& a, const TemporalSchedule& b) { return !(a == b); }

 private:
  TemporalSchedule(TemporalKind kind, double theta_bar, double gamma, std::int64_t steps,
                   std::int64_t delay)
      : kind_(kind), theta_bar_(theta_bar), gamma_(gamma), steps_(steps), delay_(delay) {}

  static void check_unit(const char* name, double v) {
    if (!(v > 0.0 && v <= 1.0)) detail::throw_error(name, " must be in (0, 1], got ", v);
  }
  static std::int64_t checked_delay(std::int64_t delay) {
    if (delay < 0) detail::throw_error("delay must be >= 0, got ", delay);
    return delay;
  }
  static std::int64_t checked_steps(std::int64_t steps) {
    if (steps <= 0) detail::throw_error("decay steps must be > 0, got ", steps);
    return steps;
  }

  TemporalKind kind_ = TemporalKind::constant;
  double theta_bar_ = 1.0;
  double gamma_ = 0.0;
  std::int64_t steps_ = 0;
  std::int64_t delay_ = 0;
};

}  // namespace pld
