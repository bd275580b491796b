// Row reductions that vectorize and keep their bits: a sum (or max) over n terms f(0..n-1) kept
// in kLanes independent partial results, lane l taking the terms c with c % kLanes == l, then
// combined in a fixed tree. The order depends only on n, never on threads or alignment, so a
// pass gives the same bits however it is split; and it needs no reassociation, so compilers
// vectorize it without -ffast-math. One running sum (what the passes had) is a chain of
// dependent adds, latency-bound (the LayerNorm forward of a 2048 x 768 bf16 block: 1.47 ms that way,
// 0.50 ms in lanes, on 2 cores of a Zen 5).
#pragma once

#include <cstring>
#include <type_traits>

namespace pld::cpu::detail {

constexpr int kLanes = 16;

// sum_{c < n} f(c) in Acc.
template <class Acc, class F>
inline Acc lane_sum(int n, F&& f) {
  Acc s[kLanes] = {};
  int c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += f(c + l);
  for (int l = 0; c + l < n; ++l) s[l] += f(c + l);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

// max(init, max_{c < n} f(c)); terms for which f returns init do not count (a masked term).
// Exact in any order for non-NaN terms.
template <class Acc, class F>
inline Acc lane_max(int n, Acc init, F&& f) {
  Acc s[kLanes];
  for (int l = 0; l < kLanes; ++l) s[l] = init;
  int c = 0;
  for (; c + kLanes <= n; c += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const Acc v = f(c + l);
      s[l] = v > s[l] ? v : s[l];
    }
  for (int l = 0; c + l < n; ++l) {
    const Acc v = f(c + l);
    s[l] = v > s[l] ? v : s[l];
  }
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) s[l] = s[l + w] > s[l] ? s[l + w] : s[l];
  return s[0];
}

// max(init, max_{c < n} x[c]) over a contiguous row: lane_max's value (a maximum is exact in any
// order, and a NaN term never wins in either), with the row loaded as the target's native vectors.
// GCC 12 leaves lane_max's select scalar when its terms come through a function: 0.59 ns per
// element against 0.07 this way (a 128-wide softmax row, one Zen 5 core). The vector width
// follows the target: 16 floats with AVX-512, 8 with AVX, 4 otherwise (a wider generic vector
// is split into scalar selects). Other compilers and types take lane_max.
template <class Acc>
inline Acc lane_max(const Acc* x, int n, Acc init) {
#if defined(__GNUC__) && !defined(__clang__)
  if constexpr (std::is_same<Acc, float>::value) {
#if defined(__AVX512F__)
    constexpr int W = 16;
#elif defined(__AVX__)
    constexpr int W = 8;
#else
    constexpr int W = 4;
#endif
    typedef float V __attribute__((vector_size(W * sizeof(float))));
    V s;
    for (int l = 0; l < W; ++l) s[l] = init;
    int c = 0;
    for (; c + W <= n; c += W) {
      V v;
      std::memcpy(&v, x + c, sizeof v);
      s = v > s ? v : s;
    }
    float m = init;
    for (int l = 0; l < W; ++l) m = s[l] > m ? s[l] : m;
    for (; c < n; ++c) m = x[c] > m ? x[c] : m;
    return m;
  }
#endif
  return lane_max<Acc>(n, init, [&](int c) { return x[c]; });
}

}  // namespace pld::cpu::detail
