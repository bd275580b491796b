// The dropout mask of one site of one layer step, as every backend draws it: the same Philox
// words and the same keep test (pld::dropout_block, pld::dropout_keeps) as pld::cpu::dropout_apply,
// so masks agree bit for bit across backends. Plain host/device code (the CUDA kernels use it
// verbatim); the host tests check it against the CPU dropout.
#pragma once

#include <cstdint>

#include "pld/core/config.hpp"
#include "pld/core/random.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld {

struct DropoutMask {
  std::uint64_t seed = 0;
  std::uint64_t step = 0;
  std::uint32_t site = 0;
  std::uint32_t layer = 0;
  float rate = 0.0f;   // 0: no dropout, every element kept with scale 1
  float scale = 1.0f;  // 1 / (1 - rate), computed in float as the CPU layer does for float
  // Element e of a call is element offset + e of the site's stream (a data-parallel shard's
  // place in the global batch: LayerStep::first_row times the site's elements per row).
  std::uint64_t offset = 0;

  PLD_HOST_DEVICE bool active() const { return rate > 0.0f; }

  // Keep flag of element e of the call.
  PLD_HOST_DEVICE bool keeps(std::uint64_t e) const {
    if (!active()) return true;
    e += offset;
    const U32x4 r = dropout_block(seed, step, site, layer, e / 4);
    return dropout_keeps(r.v[e % 4], rate);
  }

  // Keep flags of elements e0 .. e0+3 of the call: one Philox block when offset + e0 is a
  // multiple of 4.
  PLD_HOST_DEVICE void keeps4(std::uint64_t e0, bool k[4]) const {
    e0 += offset;
    if (!active()) {
      k[0] = k[1] = k[2] = k[3] = true;
    } else if (e0 % 4 == 0) {
      const U32x4 r = dropout_block(seed, step, site, layer, e0 / 4);
      for (int w = 0; w < 4; ++w) k[w] = dropout_keeps(r.v[w], rate);
    } else {
      for (int w = 0; w < 4; ++w) {
        const std::uint64_t e = e0 + static_cast<std::uint64_t>(w);
        k[w] = dropout_keeps(dropout_block(seed, step, site, layer, e / 4).v[e % 4], rate);
      }
    }
  }

  // x * mask / (1 - rate) for element e.
  PLD_HOST_DEVICE float apply(float x, std::uint64_t e) const { return keeps(e) ? x * scale : 0.0f; }
};

// A site's stream has 2^34 elements (Philox's 32-bit block counter): enough for any batch one
// call can hold; make_dropout_mask refuses a global batch that would run past it.
constexpr std::uint64_t kDropoutStreamElements = std::uint64_t(1) << 34;

// The mask of `site` for `step`. per_row: the site's elements per batch row (T*H for the
// residual branches, heads*T*T for the attention probabilities), so that the call's rows start at
// element first_row * per_row; `rows`: the call's rows (checked against the stream's length).
inline DropoutMask make_dropout_mask(const LayerStep& step, DropoutSite site, float rate, std::uint64_t per_row = 0, std::int64_t rows = 0) {
  DropoutMask m;
  m.seed = step.seed;
  m.step = static_cast<std::uint64_t>(step.step);
  m.site = static_cast<std::uint32_t>(site);
  m.layer = step.layer;
  m.rate = step.training ? rate : 0.0f;
  m.scale = m.rate > 0.0f ? 1.0f / (1.0f - m.rate) : 1.0f;
  if (step.first_row < 0) detail::throw_error("LayerStep: first_row must be >= 0, got ", step.first_row);
  m.offset = static_cast<std::uint64_t>(step.first_row) * per_row;
  if (m.active() && per_row > 0 &&
      static_cast<std::uint64_t>(step.first_row + rows) > kDropoutStreamElements / per_row)
    detail::throw_error("dropout: rows up to ", step.first_row + rows, " of ", per_row,
                        " elements each run past the 2^34 elements of a mask's stream; use smaller global batches");
  return m;
}

}  // namespace pld
