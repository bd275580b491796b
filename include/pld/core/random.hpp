// Keyed random numbers for every decision pld makes. A draw is a pure function of
// (seed, step, stream, layer, index): the seed is the Philox key, the rest is the counter. No
// generator state exists, so ranks, resumed runs, host and device all make identical decisions.
#pragma once

#include <cstdint>

#include "pld/core/config.hpp"
#include "pld/core/philox.hpp"

namespace pld {

// What a draw is for. Each purpose has its own counter space so no two decisions share bits.
// Dropout sites of the layers (attention probabilities, residual branches) use
// dropout_base + site.
enum class RandomStream : std::uint32_t {
  layer_gate = 1,     // Bernoulli keep decision of a whole layer
  layer_order = 2,    // permutation and offset of the fixed-count (systematic) sampler
  sample_gate = 3,    // keep decision of one sample (row of the batch) in one layer
  sample_order = 4,   // permutation and offset of the fixed-count sampler over rows of a layer
  param_init = 5,     // parameter initialisation (layer = tensor id, index = element pair)
  dropout_base = 16,  // + site index, for elementwise dropout masks
};

// Counter layout: {step low word, step high word, stream << 16 | layer, index}. Layers and
// streams therefore each get 16 bits, and every (stream, layer) pair has 2^32 blocks per step.
PLD_HOST_DEVICE U32x4 random_block(std::uint64_t seed, std::uint64_t step, std::uint32_t stream,
                                   std::uint32_t layer, std::uint32_t index) {
  const U32x4 counter{{static_cast<std::uint32_t>(step), static_cast<std::uint32_t>(step >> 32),
                       (stream << 16) | (layer & 0xFFFFu), index}};
  const U32x2 key{{static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)}};
  return philox4x32_10(counter, key);
}

PLD_HOST_DEVICE U32x4 random_block(std::uint64_t seed, std::uint64_t step, RandomStream stream,
                                   std::uint32_t layer, std::uint32_t index) {
  return random_block(seed, step, static_cast<std::uint32_t>(stream), layer, index);
}

// 53 random bits from two words, as a double in [0, 1).
PLD_HOST_DEVICE double uniform_double(std::uint32_t hi, std::uint32_t lo) {
  const std::uint64_t bits = (static_cast<std::uint64_t>(hi >> 5) << 26) | (lo >> 6);
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);  // 2^-53
}

// 24 random bits as a float in [0, 1): what elementwise dropout uses, four per block.
PLD_HOST_DEVICE float uniform_float(std::uint32_t word) {
  return static_cast<float>(word >> 8) * (1.0f / 16777216.0f);  // 2^-24
}

// Elementwise dropout, shared by every backend so CPU and GPU masks are the same bits: element e
// of a site uses word e % 4 of block e / 4 of stream dropout_base + site, and is kept when its
// 24-bit uniform is >= rate.
PLD_HOST_DEVICE U32x4 dropout_block(std::uint64_t seed, std::uint64_t step, std::uint32_t site,
                                    std::uint32_t layer, std::uint64_t block) {
  return random_block(seed, step, static_cast<std::uint32_t>(RandomStream::dropout_base) + site, layer,
                      static_cast<std::uint32_t>(block));
}

PLD_HOST_DEVICE bool dropout_keeps(std::uint32_t word, float rate) { return uniform_float(word) >= rate; }

// One uniform double in [0, 1) for (seed, step, stream, layer, index).
PLD_HOST_DEVICE double uniform01(std::uint64_t seed, std::uint64_t step, RandomStream stream,
                                 std::uint32_t layer, std::uint32_t index) {
  const U32x4 r = random_block(seed, step, stream, layer, index);
  return uniform_double(r.v[0], r.v[1]);
}

}  // namespace pld
