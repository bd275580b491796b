// Row reductions that vectorize and keep their bits: a sum (or max) over n terms f(0..n-1) kept
// in kLanes independent partial results, lane l taking the terms c with c % kLanes == l, then
// combined in a fixed tree. The order depends only on n, never on threads or alignment, so a
// pass gives the same bits however it is split; and it needs no reassociation, so compilers
// vectorize it without -ffast-math. One running sum (what the passes had) is a chain of
// dependent adds, latency-bound (the LayerNorm forward of a 2048 x 768 bf16 block: 1.47 ms that way,
// 0.50 ms in lanes, on 2 cores of a Zen 5).
#pragma once

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

}  // namespace pld::cpu::detail
