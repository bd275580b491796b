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

  PLD_HOST_DEVICE bool active() const { return rate > 0.0f; }

  // Keep flag of element e of the site's stream.
  PLD_HOST_DEVICE bool keeps(std::uint64_t e) const {
    if (!active()) return true;
    const U32x4 r = dropout_block(seed, step, site, layer, e / 4);
    return dropout_keeps(r.v[e % 4], rate);
  }

  // Keep flags of elements e0 .. e0+3: one Philox block when e0 is a multiple of 4.
  PLD_HOST_DEVICE void keeps4(std::uint64_t e0, bool k[4]) const {
    if (!active()) {
      k[0] = k[1] = k[2] = k[3] = true;
    } else if (e0 % 4 == 0) {
      const U32x4 r = dropout_block(seed, step, site, layer, e0 / 4);
      for (int w = 0; w < 4; ++w) k[w] = dropout_keeps(r.v[w], rate);
    } else {
      for (int w = 0; w < 4; ++w) k[w] = keeps(e0 + static_cast<std::uint64_t>(w));
    }
  }

  // x * mask / (1 - rate) for element e.
  PLD_HOST_DEVICE float apply(float x, std::uint64_t e) const { return keeps(e) ? x * scale : 0.0f; }
};

inline DropoutMask make_dropout_mask(const LayerStep& step, DropoutSite site, float rate) {
  DropoutMask m;
  m.seed = step.seed;
  m.step = static_cast<std::uint64_t>(step.step);
  m.site = static_cast<std::uint32_t>(site);
  m.layer = step.layer;
  m.rate = step.training ? rate : 0.0f;
  m.scale = m.rate > 0.0f ? 1.0f / (1.0f - m.rate) : 1.0f;
  return m;
}

}  // namespace pld
