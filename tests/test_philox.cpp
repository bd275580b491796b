// Philox4x32-10 against the known-answer vectors published with Random123 (kat_vectors,
// "philox4x32 10" lines: counter[4] key[2] -> output[4]), and the keyed draws built on it.
#include <catch2/catch.hpp>

#include <set>

#include "pld/core/philox.hpp"
#include "pld/core/random.hpp"

namespace {

void check_kat(pld::U32x4 ctr, pld::U32x2 key, pld::U32x4 want) {
  const pld::U32x4 got = pld::philox4x32_10(ctr, key);
  for (int i = 0; i < 4; ++i) CHECK(got.v[i] == want.v[i]);
}

}  // namespace

TEST_CASE("philox4x32-10 matches the Random123 known answers", "[rng]") {
  check_kat({{0, 0, 0, 0}}, {{0, 0}}, {{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}});
  check_kat({{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}}, {{0xffffffff, 0xffffffff}},
            {{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}});
  check_kat({{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}}, {{0xa4093822, 0x299f31d0}},
            {{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}});
}

TEST_CASE("keyed draws differ across every coordinate and repeat exactly", "[rng]") {
  std::set<std::uint32_t> seen;
  for (std::uint64_t seed : {0ull, 1ull, 1ull << 40})
    for (std::uint64_t step : {0ull, 1ull, 1ull << 33})
      for (std::uint32_t stream : {1u, 2u, 3u})
        for (std::uint32_t layer : {0u, 1u, 65535u})
          for (std::uint32_t index : {0u, 7u}) {
            const auto a = pld::random_block(seed, step, stream, layer, index);
            const auto b = pld::random_block(seed, step, stream, layer, index);
            for (int i = 0; i < 4; ++i) REQUIRE(a.v[i] == b.v[i]);
            seen.insert(a.v[0]);
          }
  // 3*3*3*3*2 = 162 distinct counters/keys; a collision of 32-bit words would be a layout bug.
  CHECK(seen.size() == 162);
}

TEST_CASE("uniform conversions stay below 1 and average one half", "[rng]") {
  CHECK(pld::uniform_double(0, 0) == 0.0);
  CHECK(pld::uniform_double(0xffffffffu, 0xffffffffu) < 1.0);
  CHECK(pld::uniform_double(0xffffffffu, 0xffffffffu) > 1.0 - 1e-15);
  CHECK(pld::uniform_float(0) == 0.0f);
  CHECK(pld::uniform_float(0xffffffffu) < 1.0f);
  // Mean of many draws is 1/2 within 5 standard errors (sd of U[0,1) is 1/sqrt(12)).
  const int n = 200000;
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += pld::uniform01(3, 4, pld::RandomStream::layer_gate, 0, static_cast<std::uint32_t>(i));
  CHECK(std::abs(sum / n - 0.5) < 5.0 / std::sqrt(12.0 * n));
}
