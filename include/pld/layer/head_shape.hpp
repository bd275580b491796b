// The index map between the packed row-major (N, parts * H) activations of a layer and the
// head-major (parts, B, heads, T, d) layout its batched attention products use. Plain host/device
// code, shared by every backend.
#pragma once

#include <cstdint>

#include "pld/core/config.hpp"

namespace pld {

// Shape of the head split: `parts` stacked (B*T, H) blocks (3 for q|k|v, 1 for one tensor).
struct HeadShape {
  int batch, seq, heads, dim, parts;
  PLD_HOST_DEVICE int hidden() const { return heads * dim; }
  PLD_HOST_DEVICE std::int64_t elements() const {
    return static_cast<std::int64_t>(parts) * batch * seq * heads * dim;
  }
};

// Offset in the packed row-major (B*T, parts*H) tensor of head-major element idx, where idx runs
// over (part, b, head, t, i) row-major.
PLD_HOST_DEVICE std::int64_t packed_offset(const HeadShape& s, std::int64_t idx) {
  const int i = static_cast<int>(idx % s.dim);
  idx /= s.dim;
  const int t = static_cast<int>(idx % s.seq);
  idx /= s.seq;
  const int h = static_cast<int>(idx % s.heads);
  idx /= s.heads;
  const int b = static_cast<int>(idx % s.batch);
  const int part = static_cast<int>(idx / s.batch);
  const std::int64_t row = static_cast<std::int64_t>(b) * s.seq + t;
  return row * (static_cast<std::int64_t>(s.parts) * s.hidden()) + static_cast<std::int64_t>(part) * s.hidden() +
         static_cast<std::int64_t>(h) * s.dim + i;
}

}  // namespace pld
