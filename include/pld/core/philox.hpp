// Philox4x32-10, the counter-based generator of Salmon et al., "Parallel Random Numbers: As Easy
// as 1, 2, 3" (SC'11). A pure function of (counter, key): no state, the same bits on host and device.
#pragma once

#include <cstdint>

#include "pld/core/config.hpp"

namespace pld {

struct U32x2 {
  std::uint32_t v[2];
};

struct U32x4 {
  std::uint32_t v[4];
};

namespace detail {

constexpr std::uint32_t kPhiloxM0 = 0xD2511F53u;  // round multipliers
constexpr std::uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr std::uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
constexpr std::uint32_t kPhiloxW1 = 0xBB67AE85u;

PLD_HOST_DEVICE U32x4 philox_round(U32x4 c, U32x2 k) {
  const std::uint64_t p0 = static_cast<std::uint64_t>(kPhiloxM0) * c.v[0];
  const std::uint64_t p1 = static_cast<std::uint64_t>(kPhiloxM1) * c.v[2];
  const auto hi0 = static_cast<std::uint32_t>(p0 >> 32);
  const auto lo0 = static_cast<std::uint32_t>(p0);
  const auto hi1 = static_cast<std::uint32_t>(p1 >> 32);
  const auto lo1 = static_cast<std::uint32_t>(p1);
  return U32x4{{hi1 ^ c.v[1] ^ k.v[0], lo1, hi0 ^ c.v[3] ^ k.v[1], lo0}};
}

}  // namespace detail

// Ten rounds; the key is bumped by the Weyl constants before every round but the first.
PLD_HOST_DEVICE U32x4 philox4x32_10(U32x4 counter, U32x2 key) {
  counter = detail::philox_round(counter, key);
  for (int r = 1; r < 10; ++r) {
    key.v[0] += detail::kPhiloxW0;
    key.v[1] += detail::kPhiloxW1;
    counter = detail::philox_round(counter, key);
  }
  return counter;
}

}  // namespace pld
