// Statistical properties of the samplers, with fixed seeds and stated bounds. Every bound is
// 5 standard errors (two-sided p ~ 6e-7 per check), so a failure means a real bias, not bad luck;
// and with fixed seeds the outcome is deterministic anyway.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "pld/gate/gate.hpp"
#include "pld/schedule/presets.hpp"

namespace {

constexpr double kSigmas = 5.0;

// dd_only at fixed theta: p_l does not change with the step, so N steps are N draws of each p_l.
pld::Schedule fixed_depth_schedule(int layers, double theta) {
  return pld::Schedule(pld::TemporalSchedule::constant(theta), pld::DepthSchedule::linear(), layers);
}

}  // namespace

TEST_CASE("each layer is kept with frequency p_l", "[gate][statistics]") {
  const auto sampling = GENERATE(pld::Sampling::bernoulli, pld::Sampling::fixed_count);
  const int L = 12, N = 40000;
  const pld::Gate gate(fixed_depth_schedule(L, 0.3), {2024, sampling});
  std::vector<int> kept(L, 0);
  pld::LayerPlan p;
  for (int t = 0; t < N; ++t) {
    gate.plan(t, p);
    for (int i = 0; i < L; ++i) kept[i] += p.keep[i];
  }
  for (int i = 0; i < L; ++i) {
    const double q = p.prob[i];
    const double se = std::sqrt(q * (1 - q) / N);
    INFO("layer " << i + 1 << " p = " << q << " freq = " << kept[i] / double(N));
    CHECK(std::abs(kept[i] / double(N) - q) <= kSigmas * se);
  }
}

TEST_CASE("each row of each layer is kept with frequency p_l (per-sample)", "[gate][statistics]") {
  const auto sampling = GENERATE(pld::Sampling::bernoulli, pld::Sampling::fixed_count);
  const int L = 4, B = 16, N = 10000;
  const pld::Gate gate(fixed_depth_schedule(L, 0.5),
                       {99, sampling, pld::Scaling::inverse_prob, pld::Granularity::sample});
  std::vector<int> kept(static_cast<std::size_t>(L * B), 0);
  pld::LayerPlan p;
  for (int t = 0; t < N; ++t) {
    gate.plan(t, p, true, B);
    for (int k = 0; k < L * B; ++k) kept[k] += p.sample_keep[k];
  }
  for (int i = 0; i < L; ++i)
    for (int b = 0; b < B; ++b) {
      const double q = p.prob[i];
      const double se = std::sqrt(q * (1 - q) / N);
      INFO("layer " << i + 1 << " row " << b);
      CHECK(std::abs(kept[i * B + b] / double(N) - q) <= kSigmas * se);
    }
}

TEST_CASE("the 1/p-scaled gated sum is unbiased", "[gate][statistics]") {
  // S = sum_l G_l f_l / p_l has E[S] = sum_l f_l for any branch outputs f_l.
  const auto sampling = GENERATE(pld::Sampling::bernoulli, pld::Sampling::fixed_count);
  const int L = 12, N = 40000;
  const pld::Gate gate(fixed_depth_schedule(L, 0.4), {31337, sampling});
  std::vector<double> f(L);
  double truth = 0.0;
  for (int i = 0; i < L; ++i) truth += (f[i] = std::sin(1.0 + i) * (i + 1));
  double sum = 0.0, sum_sq = 0.0;
  pld::LayerPlan p;
  for (int t = 0; t < N; ++t) {
    gate.plan(t, p);
    double s = 0.0;
    for (int i = 0; i < L; ++i) s += p.scale[i] * f[i];
    sum += s;
    sum_sq += s * s;
  }
  const double mean = sum / N;
  const double var = sum_sq / N - mean * mean;
  const double se = std::sqrt(var / N);
  INFO("mean " << mean << " truth " << truth << " se " << se);
  CHECK(std::abs(mean - truth) <= kSigmas * se);
}

TEST_CASE("Bernoulli decisions of two layers are independent", "[gate][statistics]") {
  const int L = 6, N = 40000;
  const pld::Gate gate(fixed_depth_schedule(L, 0.5), {5});
  std::vector<int> both(L - 1, 0);
  pld::LayerPlan p;
  for (int t = 0; t < N; ++t) {
    gate.plan(t, p);
    for (int i = 0; i + 1 < L; ++i) both[i] += p.keep[i] & p.keep[i + 1];
  }
  for (int i = 0; i + 1 < L; ++i) {
    const double q = p.prob[i] * p.prob[i + 1];
    CHECK(std::abs(both[i] / double(N) - q) <= kSigmas * std::sqrt(q * (1 - q) / N));
  }
}
