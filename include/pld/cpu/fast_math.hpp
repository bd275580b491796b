// exp and erf for float, branch-free so that the GELU loops vectorize (std::erf and std::exp
// are library calls a compiler does not vectorize without -ffast-math): e^x from Cephes' expf
// polynomial after reducing by ln 2, erf from Abramowitz & Stegun 7.1.26. Measured against the
// double functions (tests/test_cpu_layer.cpp): exp within 1e-7 relative on [-87, 88], erf within
// 6e-7 absolute everywhere. pld::cpu uses them for float only; double (the gradient checks) keeps
// std::erf and std::exp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace pld::cpu::fast {

// e^x; x is clamped to [-87, 88] (e^-87 is still a normal float).
inline float exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);  // x = n ln2 + r, |r| <= ln2 / 2
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t bits = (static_cast<std::int32_t>(n) + 127) << 23;  // 2^n
  return p * __builtin_bit_cast(float, bits);
}

// erf(x) given e = e^{-x^2} (a caller that needs that exponential too computes it once).
inline float erf_given_exp(float x, float e) {
  const float a = std::fabs(x);
  const float t = 1.0f / (1.0f + 0.3275911f * a);
  float y = 1.061405429f;
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = 1.0f - y * t * e;
  return std::copysign(y, x);
}

// erf(x) = 1 - (a1 t + ... + a5 t^5) e^{-x^2}, t = 1 / (1 + p |x|), odd.
inline float erf(float x) { return erf_given_exp(x, fast::exp(-x * x)); }

}  // namespace pld::cpu::fast
