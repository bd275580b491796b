// bf16 on the CPU: the storage type of pld::cpu::SharedPreLnLayer<bf16> (activations and the
// products' operands in bf16, arithmetic and gradients in fp32, as on the GPU). A value type over
// the 16 bits: converted from float with round to nearest even (NaN stays NaN), to float exactly.
// Plain C++: the conversions are branch-free, so loops of them vectorize.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pld::cpu {

namespace detail {
// fp32 -> bf16 bits, round to nearest even (NaN stays NaN, quieted).
inline std::uint16_t to_bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const std::uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  const std::uint32_t nan = (u >> 16) | 0x40u;
  return static_cast<std::uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}
inline float from_bf16_bits(std::uint16_t b) {
  const std::uint32_t u = static_cast<std::uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace detail

struct bf16 {
  std::uint16_t bits = 0;
  bf16() = default;
  bf16(float f) : bits(detail::to_bf16_bits(f)) {}  // NOLINT: implicit, as float -> half in CUDA
  explicit operator float() const { return detail::from_bf16_bits(bits); }
};
static_assert(sizeof(bf16) == 2, "bf16 is two bytes");

inline float to_float(bf16 v) { return detail::from_bf16_bits(v.bits); }

// The arithmetic type of a storage type: float for bf16, the type itself for float and double.
// The CPU's element-wise kernels are written over the storage type S and compute in arith_t<S>:
// a bf16 input is widened where it is loaded and a bf16 output rounded where it is stored, so a
// bf16 pass reads and writes half the bytes of a float one and rounds each stored value once.
template <class S>
struct arith {
  using type = S;
};
template <>
struct arith<bf16> {
  using type = float;
};
template <class S>
using arith_t = typename arith<S>::type;

// n values widened to float / rounded to bf16, split over the threads.
inline void widen(const bf16* in, float* out, std::size_t n) {
  const auto N = static_cast<std::ptrdiff_t>(n);
#if defined(_OPENMP)  // this header is also compiled without OpenMP (the tests' CUDA files include it)
#pragma omp parallel for simd schedule(static) if (N > 65536)
#endif
  for (std::ptrdiff_t i = 0; i < N; ++i) out[i] = detail::from_bf16_bits(in[i].bits);
}
inline void narrow(const float* in, bf16* out, std::size_t n) {
  const auto N = static_cast<std::ptrdiff_t>(n);
#if defined(_OPENMP)
#pragma omp parallel for simd schedule(static) if (N > 65536)
#endif
  for (std::ptrdiff_t i = 0; i < N; ++i) out[i].bits = detail::to_bf16_bits(in[i]);
}

namespace detail {
// Element-wise bf16 kernels work in spans that fit in L1: widen a span of each input into a float
// buffer, run the float loop (which vectorizes as in a float pass), round the output span.
constexpr std::size_t kSpan = 1024;
inline void widen_span(const bf16* in, float* out, std::size_t n) {
#if defined(_OPENMP)
#pragma omp simd
#endif
  for (std::size_t i = 0; i < n; ++i) out[i] = from_bf16_bits(in[i].bits);
}
inline void narrow_span(const float* in, bf16* out, std::size_t n) {
#if defined(_OPENMP)
#pragma omp simd
#endif
  for (std::size_t i = 0; i < n; ++i) out[i].bits = to_bf16_bits(in[i]);
}
// f(offset, length) over [0, n) in spans of kSpan, the spans split over the threads.
template <class F>
void for_spans(std::size_t n, F&& f) {
  const auto spans = static_cast<std::ptrdiff_t>((n + kSpan - 1) / kSpan);
#if defined(_OPENMP)
#pragma omp parallel for schedule(static) if (n > 65536)
#endif
  for (std::ptrdiff_t s = 0; s < spans; ++s) {
    const std::size_t o = static_cast<std::size_t>(s) * kSpan;
    f(o, n - o < kSpan ? n - o : kSpan);
  }
}
}  // namespace detail

}  // namespace pld::cpu
