// Dropout whose mask is a pure function of (seed, step, layer, site, element) through Philox:
// the backward recomputes the mask instead of storing it, and runs are reproducible. Element e
// uses word e % 4 of block e / 4 of stream dropout_base + site. Kept elements scale by 1/(1-rate).
#pragma once

#include <cstddef>
#include <cstdint>

#include "pld/core/random.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld::cpu {

using pld::DropoutSite;

struct DropoutKey {
  std::uint64_t seed = 0;
  std::int64_t step = 0;
  std::uint32_t layer = 0;
  DropoutSite site = DropoutSite::attention_probs;
};

// y = x * mask / (1 - rate) over n elements starting at element `offset` of the site's stream.
// In place is allowed (x == y). Used for both directions: the backward of dropout is dropout of
// the gradient with the same mask.
template <class Scalar>
void dropout_apply(const Scalar* x, Scalar* y, std::size_t n, std::size_t offset, float rate,
                   const DropoutKey& key) {
  if (rate <= 0.0f) {
    if (x != y)
      for (std::size_t i = 0; i < n; ++i) y[i] = x[i];
    return;
  }
  const Scalar scale = Scalar(1) / (Scalar(1) - static_cast<Scalar>(rate));
  const auto step = static_cast<std::uint64_t>(key.step);
  // Blocks of four elements; the range is split by blocks so threads never share one.
  const std::size_t first = offset, last = offset + n;
  const auto b0 = static_cast<std::ptrdiff_t>(first / 4), b1 = static_cast<std::ptrdiff_t>((last + 3) / 4);
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t b = b0; b < b1; ++b) {
    const U32x4 r = dropout_block(key.seed, step, static_cast<std::uint32_t>(key.site), key.layer,
                                  static_cast<std::uint64_t>(b));
    for (int w = 0; w < 4; ++w) {
      const std::size_t e = static_cast<std::size_t>(b) * 4 + static_cast<std::size_t>(w);
      if (e < first || e >= last) continue;
      const std::size_t i = e - first;
      y[i] = dropout_keeps(r.v[w], rate) ? x[i] * scale : Scalar(0);
    }
  }
}

}  // namespace pld::cpu
