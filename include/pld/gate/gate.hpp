// Gate: a Schedule plus the sampling choices, producing the LayerPlan of any step. It holds no
// random state, so plan(step) is a pure function of (seed, step) and may be called in any order,
// on any rank, before or after a restart, with the same result.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/gate/sampler.hpp"
#include "pld/schedule/schedule.hpp"

namespace pld {

// How a kept branch is scaled: by 1/p_l (the default; keeps the gated sum unbiased, as in the
// paper) or not at all.
enum class Scaling : std::uint8_t { inverse_prob, none };

// Whether a decision drops a layer for the whole batch, or for each row (sample) separately.
enum class Granularity : std::uint8_t { layer, sample };

inline const char* to_string(Sampling s) { return s == Sampling::bernoulli ? "bernoulli" : "fixed_count"; }
inline const char* to_string(Scaling s) { return s == Scaling::inverse_prob ? "inverse_prob" : "none"; }
inline const char* to_string(Granularity g) { return g == Granularity::layer ? "layer" : "sample"; }

inline Sampling parse_sampling(std::string_view s) {
  if (s == "bernoulli") return Sampling::bernoulli;
  if (s == "fixed_count") return Sampling::fixed_count;
  detail::throw_error("unknown sampling '", std::string(s), "' (expected bernoulli or fixed_count)");
}
inline Scaling parse_scaling(std::string_view s) {
  if (s == "inverse_prob") return Scaling::inverse_prob;
  if (s == "none") return Scaling::none;
  detail::throw_error("unknown scaling '", std::string(s), "' (expected inverse_prob or none)");
}
inline Granularity parse_granularity(std::string_view s) {
  if (s == "layer") return Granularity::layer;
  if (s == "sample") return Granularity::sample;
  detail::throw_error("unknown granularity '", std::string(s), "' (expected layer or sample)");
}

struct GateConfig {
  std::uint64_t seed = 0;
  Sampling sampling = Sampling::bernoulli;
  Scaling scaling = Scaling::inverse_prob;
  Granularity granularity = Granularity::layer;

  friend bool operator==(const GateConfig& a, const GateConfig& b) {
    return a.seed == b.seed && a.sampling == b.sampling && a.scaling == b.scaling &&
           a.granularity == b.granularity;
  }
  friend bool operator!=(const GateConfig& a, const GateConfig& b) { return !(a == b); }
};

class Gate {
 public:
  explicit Gate(Schedule schedule, GateConfig config = {}) : schedule_(schedule), config_(config) {}

  // Fills `out` for `step`, reusing its storage (no allocation once sized). In evaluation
  // (training = false) every layer is kept with scale 1. `batch` is the number of rows and is
  // required (> 0) in per-sample training, ignored otherwise; an evaluation plan in per-sample
  // mode without a batch is a per-layer plan (every row runs every layer, so rows need no mask).
  void plan(std::int64_t step, LayerPlan& out, bool training = true, int batch = 0) const {
    if (step < 0) detail::throw_error("step must be >= 0, got ", step);
    if (batch < 0) detail::throw_error("batch must be >= 0, got ", batch);
    const bool per_sample = config_.granularity == Granularity::sample && (training || batch > 0);
    if (per_sample && batch <= 0)
      detail::throw_error("per-sample gating needs the batch size (> 0), got ", batch);
    const int L = schedule_.num_layers();
    const auto n = static_cast<std::size_t>(L);
    out.step = step;
    out.training = training;
    out.prob.resize(n);
    out.keep.resize(n);
    out.scale.resize(n);
    out.batch = per_sample ? batch : 0;
    if (!per_sample) out.sample_keep.clear();

    if (!training) {
      out.theta = 1.0;
      for (std::size_t i = 0; i < n; ++i) {
        out.prob[i] = 1.0;
        out.keep[i] = 1;
        out.scale[i] = 1.0;
      }
      if (per_sample) out.sample_keep.assign(n * static_cast<std::size_t>(batch), 1);
      return;
    }

    out.theta = schedule_.theta(step);
    schedule_.keep_probs(step, out.prob.data());
    if (per_sample) {
      plan_rows(step, batch, out);
    } else if (config_.sampling == Sampling::bernoulli) {
      sample_bernoulli(out.prob.data(), L, config_.seed, step, out.keep.data());
    } else {
      out.order.resize(n);
      sample_systematic(out.prob.data(), L, config_.seed, step, RandomStream::layer_order, 0,
                        out.keep.data(), out.order.data());
    }
    for (std::size_t i = 0; i < n; ++i)
      out.scale[i] = out.keep[i] ? (config_.scaling == Scaling::inverse_prob ? 1.0 / out.prob[i] : 1.0)
                                 : 0.0;
  }

  LayerPlan plan(std::int64_t step, bool training = true, int batch = 0) const {
    LayerPlan p;
    plan(step, p, training, batch);
    return p;
  }

  const Schedule& schedule() const { return schedule_; }
  const GateConfig& config() const { return config_; }

 private:
  // Per-sample mode: each layer decides for each row; fixed-count keeps floor/ceil(batch * p_l)
  // rows of every layer.
  void plan_rows(std::int64_t step, int batch, LayerPlan& out) const {
    const auto L = static_cast<std::size_t>(schedule_.num_layers());
    const auto B = static_cast<std::size_t>(batch);
    out.sample_keep.resize(L * B);
    if (config_.sampling == Sampling::fixed_count) out.order.resize(B);
    for (std::size_t i = 0; i < L; ++i) {
      std::uint8_t* rows = out.sample_keep.data() + i * B;
      int kept = 0;
      if (config_.sampling == Sampling::bernoulli) {
        for (std::size_t b = 0; b < B; ++b) {
          rows[b] = sample_kept(config_.seed, step, static_cast<int>(i), static_cast<int>(b),
                                out.prob[i]) ? 1 : 0;
          kept += rows[b];
        }
      } else {
        kept = sample_systematic(out.prob[i], batch, config_.seed, step,
                                 RandomStream::sample_order, static_cast<std::uint32_t>(i), rows,
                                 out.order.data());
      }
      out.keep[i] = kept > 0 ? 1 : 0;
    }
  }

  Schedule schedule_;
  GateConfig config_;
};

}  // namespace pld
