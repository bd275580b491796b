// Samplers that turn keep probabilities into keep decisions for one step.
//  - Bernoulli: each layer independently, G_l ~ Bernoulli(p_l), as in the PLD paper.
//  - Fixed count (randomized systematic sampling): the L unit-free intervals [C_{k-1}, C_k) of
//    lengths p_l are laid end to end in a random order and hit by the points u, u+1, u+2, ...
//    with u ~ U[0, 1). Each layer is hit with probability exactly p_l (so 1/p_l scaling stays
//    unbiased) and the number kept is always floor or ceil of sum_l p_l: constant cost per step.
//    The random order removes the correlation a fixed order would put between neighbours.
// Every decision is a pure function of (seed, step, layer[, row]) through core/random.hpp.
#pragma once

#include <cmath>
#include <cstdint>

#include "pld/core/config.hpp"
#include "pld/core/random.hpp"

namespace pld {

enum class Sampling : std::uint8_t { bernoulli, fixed_count };

// Bernoulli decision of 0-based `layer` at `step` with keep probability p.
PLD_HOST_DEVICE bool layer_kept(std::uint64_t seed, std::int64_t step, int layer, double p) {
  return uniform01(seed, static_cast<std::uint64_t>(step), RandomStream::layer_gate,
                   static_cast<std::uint32_t>(layer), 0) < p;
}

// Bernoulli decision of row `sample` in 0-based `layer` at `step` (per-sample mode). A kernel
// can evaluate this per row without any host round trip.
PLD_HOST_DEVICE bool sample_kept(std::uint64_t seed, std::int64_t step, int layer, int sample,
                                 double p) {
  return uniform01(seed, static_cast<std::uint64_t>(step), RandomStream::sample_gate,
                   static_cast<std::uint32_t>(layer), static_cast<std::uint32_t>(sample)) < p;
}

// Independent Bernoulli draws for n layers; returns how many were kept.
inline int sample_bernoulli(const double* p, int n, std::uint64_t seed, std::int64_t step,
                            std::uint8_t* keep) {
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    keep[i] = layer_kept(seed, step, i, p[i]) ? 1 : 0;
    kept += keep[i];
  }
  return kept;
}

namespace detail {

// Randomized systematic sampling of n items; prob(i) in [0, 1] gives item i's probability.
template <class ProbAt>
int sample_systematic_with(ProbAt prob, int n, std::uint64_t seed, std::int64_t step,
                           RandomStream stream, std::uint32_t tag, std::uint8_t* keep,
                           std::uint32_t* order) {
  const auto ustep = static_cast<std::uint64_t>(step);
  for (int i = 0; i < n; ++i) order[i] = static_cast<std::uint32_t>(i);
  // Fisher-Yates with multiply-shift ranges; block 0 is reserved for the offset u.
  U32x4 block{};
  int used = 4;
  std::uint32_t block_index = 1;
  for (int i = n - 1; i > 0; --i) {
    if (used == 4) {
      block = random_block(seed, ustep, stream, tag, block_index++);
      used = 0;
    }
    const auto j = static_cast<std::uint32_t>(
        (static_cast<std::uint64_t>(block.v[used++]) * static_cast<std::uint64_t>(i + 1)) >> 32);
    const std::uint32_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  const U32x4 b0 = random_block(seed, ustep, stream, tag, 0);
  const double u = uniform_double(b0.v[0], b0.v[1]);
  // Item k covers [C_{k-1}, C_k); it is hit iff an integer m has C_{k-1} <= u + m < C_k. The
  // number of such m is ceil(C_k - u) - ceil(C_{k-1} - u), and the counts telescope to
  // ceil(sum p - u), which is floor or ceil of sum p.
  double c = 0.0;
  double prev = 0.0;  // ceil(0 - u) for u in [0, 1)
  int kept = 0;
  for (int k = 0; k < n; ++k) {
    const std::uint32_t i = order[k];
    c += prob(i);
    const double cur = std::ceil(c - u);
    keep[i] = cur - prev >= 1.0 ? 1 : 0;
    kept += keep[i];
    prev = cur;
  }
  return kept;
}

}  // namespace detail

// Randomized systematic sampling of n items with probabilities p[0..n) (each in [0, 1]).
// `stream` and `tag` select the counter space (layers of a step, or rows of one layer);
// `order` is scratch for n indices. Returns the number kept: floor or ceil of sum p.
inline int sample_systematic(const double* p, int n, std::uint64_t seed, std::int64_t step,
                             RandomStream stream, std::uint32_t tag, std::uint8_t* keep,
                             std::uint32_t* order) {
  return detail::sample_systematic_with([p](std::uint32_t i) { return p[i]; }, n, seed, step,
                                        stream, tag, keep, order);
}

// The same for n items that share one probability p: keeps floor or ceil of n p of them.
inline int sample_systematic(double p, int n, std::uint64_t seed, std::int64_t step,
                             RandomStream stream, std::uint32_t tag, std::uint8_t* keep,
                             std::uint32_t* order) {
  return detail::sample_systematic_with([p](std::uint32_t) { return p; }, n, seed, step, stream,
                                        tag, keep, order);
}

}  // namespace pld
