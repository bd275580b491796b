// Dropout whose mask is a pure function of (seed, step, layer, site, element) through Philox:
// the backward recomputes the mask instead of storing it, and runs are reproducible. Element e
// uses word e % 4 of block e / 4 of stream dropout_base + site. Kept elements scale by 1/(1-rate).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "pld/core/random.hpp"
#include "pld/cpu/bf16.hpp"
#include "pld/layer/layer_step.hpp"

namespace pld::cpu {

using pld::DropoutSite;

struct DropoutKey {
  std::uint64_t seed = 0;
  std::int64_t step = 0;
  std::uint32_t layer = 0;
  DropoutSite site = DropoutSite::attention_probs;
};

namespace detail {

constexpr int kDropoutLanes = 16;  // blocks computed together (64 elements)

// Philox blocks block0 .. block0 + 15 of the site's stream. Lane i equals
// pld::dropout_block(seed, step, site, layer, block0 + i) bit for bit. With AVX-512 the sixteen
// lanes are one register each (the 32x32 -> 64 products of even and odd lanes by vpmuludq), with
// AVX2 two registers of eight; otherwise plain arrays, which compilers do not vectorize (GCC 12).
#if defined(__AVX512F__)
// The AVX-512 code below uses the zero-masked forms of the intrinsics with a full mask (the same
// instructions): the plain forms (_mm512_mul_epu32, _mm512_srli_epi64, _mm512_unpacklo_epi32,
// _mm512_shuffle_i32x4, _mm512_cvtepi32_ps, ..) pass _mm512_undefined_*() as their merge source,
// which GCC 12.2 reports as "used uninitialized" (an error under -Werror) wherever it emits one of
// these functions out of line, and that depends on the caller: GCC bug 105593, fixed in 12.3.
constexpr __mmask8 kAll8 = 0xFF;
constexpr __mmask16 kAll16 = 0xFFFF;
inline __m512i philox_mulhi(__m512i a, __m512i m, __m512i& lo) {
  lo = _mm512_mullo_epi32(a, m);
  const __m512i even = _mm512_maskz_mul_epu32(kAll8, a, m);  // lanes 0, 2, ..: 64-bit products
  const __m512i odd = _mm512_maskz_mul_epu32(kAll8, _mm512_maskz_srli_epi64(kAll8, a, 32),  // lanes 1, 3, ..
                                             _mm512_maskz_srli_epi64(kAll8, m, 32));
  return _mm512_mask_blend_epi32(0xAAAA, _mm512_maskz_srli_epi64(kAll8, even, 32), odd);  // the high halves
}
#endif

inline void dropout_blocks(const DropoutKey& key, std::uint64_t block0, std::uint32_t (&w)[4][kDropoutLanes]) {
#if defined(__AVX512F__)
  {
    const auto step = static_cast<std::uint64_t>(key.step);
    const std::uint32_t stream = static_cast<std::uint32_t>(RandomStream::dropout_base) + static_cast<std::uint32_t>(key.site);
    __m512i c0 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(step)));
    __m512i c1 = _mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(step >> 32)));
    __m512i c2 = _mm512_set1_epi32(static_cast<int>((stream << 16) | (key.layer & 0xFFFFu)));
    __m512i c3 = _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0))),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i m0 = _mm512_set1_epi32(static_cast<int>(pld::detail::kPhiloxM0));
    const __m512i m1 = _mm512_set1_epi32(static_cast<int>(pld::detail::kPhiloxM1));
    std::uint32_t k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
    for (int r = 0; r < 10; ++r) {
      if (r > 0) {
        k0 += pld::detail::kPhiloxW0;
        k1 += pld::detail::kPhiloxW1;
      }
      __m512i lo0, lo1;
      const __m512i hi0 = philox_mulhi(c0, m0, lo0), hi1 = philox_mulhi(c2, m1, lo1);
      const __m512i n0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), _mm512_set1_epi32(static_cast<int>(k0)));
      const __m512i n2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), _mm512_set1_epi32(static_cast<int>(k1)));
      c0 = n0;
      c1 = lo1;
      c2 = n2;
      c3 = lo0;
    }
    _mm512_storeu_si512(w[0], c0);
    _mm512_storeu_si512(w[1], c1);
    _mm512_storeu_si512(w[2], c2);
    _mm512_storeu_si512(w[3], c3);
    return;
  }
#elif defined(__AVX2__)
  {
    const auto step = static_cast<std::uint64_t>(key.step);
    const std::uint32_t stream = static_cast<std::uint32_t>(RandomStream::dropout_base) + static_cast<std::uint32_t>(key.site);
    const __m256i m0 = _mm256_set1_epi32(static_cast<int>(pld::detail::kPhiloxM0));
    const __m256i m1 = _mm256_set1_epi32(static_cast<int>(pld::detail::kPhiloxM1));
    // The high 32 bits of a * m (m the same in every lane): even lanes' 64-bit products shifted
    // down, blended with the odd lanes' products (whose high halves are already in place).
    const auto mulhi = [](__m256i a, __m256i m) {
      const __m256i even = _mm256_mul_epu32(a, m), odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
      return _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
    };
    for (int half = 0; half < 2; ++half) {
      __m256i c0 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(step)));
      __m256i c1 = _mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(step >> 32)));
      __m256i c2 = _mm256_set1_epi32(static_cast<int>((stream << 16) | (key.layer & 0xFFFFu)));
      __m256i c3 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(static_cast<std::uint32_t>(block0) + 8u * static_cast<std::uint32_t>(half))),
                                    _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      std::uint32_t k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
      for (int r = 0; r < 10; ++r) {
        if (r > 0) {
          k0 += pld::detail::kPhiloxW0;
          k1 += pld::detail::kPhiloxW1;
        }
        const __m256i lo0 = _mm256_mullo_epi32(c0, m0), lo1 = _mm256_mullo_epi32(c2, m1);
        const __m256i hi0 = mulhi(c0, m0), hi1 = mulhi(c2, m1);
        c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
        c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
        c1 = lo1;
        c3 = lo0;
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[0] + 8 * half), c0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[1] + 8 * half), c1);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[2] + 8 * half), c2);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w[3] + 8 * half), c3);
    }
    return;
  }
#endif
  const auto step = static_cast<std::uint64_t>(key.step);
  const std::uint32_t stream = static_cast<std::uint32_t>(RandomStream::dropout_base) + static_cast<std::uint32_t>(key.site);
  std::uint32_t c0[kDropoutLanes], c1[kDropoutLanes], c2[kDropoutLanes], c3[kDropoutLanes];
  for (int i = 0; i < kDropoutLanes; ++i) {
    c0[i] = static_cast<std::uint32_t>(step);
    c1[i] = static_cast<std::uint32_t>(step >> 32);
    c2[i] = (stream << 16) | (key.layer & 0xFFFFu);
    c3[i] = static_cast<std::uint32_t>(block0 + static_cast<std::uint64_t>(i));
  }
  std::uint32_t k0 = static_cast<std::uint32_t>(key.seed), k1 = static_cast<std::uint32_t>(key.seed >> 32);
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += pld::detail::kPhiloxW0;
      k1 += pld::detail::kPhiloxW1;
    }
    for (int i = 0; i < kDropoutLanes; ++i) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(pld::detail::kPhiloxM0) * c0[i];
      const std::uint64_t p1 = static_cast<std::uint64_t>(pld::detail::kPhiloxM1) * c2[i];
      const auto n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[i] ^ k0;
      const auto n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[i] ^ k1;
      c1[i] = static_cast<std::uint32_t>(p1);
      c3[i] = static_cast<std::uint32_t>(p0);
      c0[i] = n0;
      c2[i] = n2;
    }
  }
  for (int i = 0; i < kDropoutLanes; ++i) {
    w[0][i] = c0[i];
    w[1][i] = c1[i];
    w[2][i] = c2[i];
    w[3][i] = c3[i];
  }
}

#if defined(__AVX512F__)
// The 64 elements of one group: element 4 * lane + k draws word k of lane `lane`, so the four
// word registers are transposed into element order (4x4 within each 128-bit lane, then the
// 128-bit lanes), compared as dropout_keeps() does (the top 24 bits as a float in [0, 1), exact)
// and x * scale is stored where kept, 0 elsewhere: the bits of the scalar loop.
inline void dropout_select_64(const std::uint32_t (&w)[4][kDropoutLanes], const float* x, float* y, float rate, float scale) {
  const __m512i w0 = _mm512_loadu_si512(w[0]), w1 = _mm512_loadu_si512(w[1]), w2 = _mm512_loadu_si512(w[2]),
                w3 = _mm512_loadu_si512(w[3]);
  const __m512i t0 = _mm512_maskz_unpacklo_epi32(kAll16, w0, w1), t1 = _mm512_maskz_unpackhi_epi32(kAll16, w0, w1);
  const __m512i t2 = _mm512_maskz_unpacklo_epi32(kAll16, w2, w3), t3 = _mm512_maskz_unpackhi_epi32(kAll16, w2, w3);
  const __m512i r0 = _mm512_maskz_unpacklo_epi64(kAll8, t0, t2), r1 = _mm512_maskz_unpackhi_epi64(kAll8, t0, t2);
  const __m512i r2 = _mm512_maskz_unpacklo_epi64(kAll8, t1, t3), r3 = _mm512_maskz_unpackhi_epi64(kAll8, t1, t3);
  const __m512i u0 = _mm512_maskz_shuffle_i32x4(kAll16, r0, r1, 0x44), u1 = _mm512_maskz_shuffle_i32x4(kAll16, r0, r1, 0xEE);
  const __m512i u2 = _mm512_maskz_shuffle_i32x4(kAll16, r2, r3, 0x44), u3 = _mm512_maskz_shuffle_i32x4(kAll16, r2, r3, 0xEE);
  const __m512i o[4] = {_mm512_maskz_shuffle_i32x4(kAll16, u0, u2, 0x88), _mm512_maskz_shuffle_i32x4(kAll16, u0, u2, 0xDD),
                        _mm512_maskz_shuffle_i32x4(kAll16, u1, u3, 0x88), _mm512_maskz_shuffle_i32x4(kAll16, u1, u3, 0xDD)};
  const __m512 r = _mm512_set1_ps(rate), sc = _mm512_set1_ps(scale), two_m24 = _mm512_set1_ps(1.0f / 16777216.0f);
  for (int q = 0; q < 4; ++q) {
    const __m512 u = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(kAll16, _mm512_maskz_srli_epi32(kAll16, o[q], 8)), two_m24);
    const __mmask16 keep = _mm512_cmp_ps_mask(u, r, _CMP_GE_OQ);
    _mm512_storeu_ps(y + 16 * q, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(x + 16 * q), sc));
  }
}
#elif defined(__AVX2__)
// The same for the 32 elements of lanes 8 * half .. 8 * half + 7: a 4 x 8 transpose (within the
// 128-bit lanes, then across them), the compare, and the kept products masked (dropped ones +0).
inline void dropout_select_32(const std::uint32_t (&w)[4][kDropoutLanes], int half, const float* x, float* y, float rate, float scale) {
  const auto load = [&](int k) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[k] + 8 * half)); };
  const __m256i w0 = load(0), w1 = load(1), w2 = load(2), w3 = load(3);
  const __m256i t0 = _mm256_unpacklo_epi32(w0, w1), t1 = _mm256_unpackhi_epi32(w0, w1);
  const __m256i t2 = _mm256_unpacklo_epi32(w2, w3), t3 = _mm256_unpackhi_epi32(w2, w3);
  const __m256i r0 = _mm256_unpacklo_epi64(t0, t2), r1 = _mm256_unpackhi_epi64(t0, t2);  // lanes 0 | 4, 1 | 5
  const __m256i r2 = _mm256_unpacklo_epi64(t1, t3), r3 = _mm256_unpackhi_epi64(t1, t3);  // lanes 2 | 6, 3 | 7
  const __m256i o[4] = {_mm256_permute2x128_si256(r0, r1, 0x20), _mm256_permute2x128_si256(r2, r3, 0x20),
                        _mm256_permute2x128_si256(r0, r1, 0x31), _mm256_permute2x128_si256(r2, r3, 0x31)};
  const __m256 r = _mm256_set1_ps(rate), sc = _mm256_set1_ps(scale), two_m24 = _mm256_set1_ps(1.0f / 16777216.0f);
  for (int q = 0; q < 4; ++q) {
    const __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(o[q], 8)), two_m24);
    const __m256 keep = _mm256_cmp_ps(u, r, _CMP_GE_OQ);
    _mm256_storeu_ps(y + 8 * q, _mm256_and_ps(keep, _mm256_mul_ps(_mm256_loadu_ps(x + 8 * q), sc)));
  }
}
#endif

#if defined(__AVX512F__) || defined(__AVX2__)
// The 64 elements of one group of 16 blocks, in this ISA's registers.
inline void dropout_select_group(const std::uint32_t (&w)[4][kDropoutLanes], const float* x, float* y, float rate, float scale) {
#if defined(__AVX512F__)
  dropout_select_64(w, x, y, rate, scale);
#else
  dropout_select_32(w, 0, x, y, rate, scale);
  dropout_select_32(w, 1, x + 32, y + 32, rate, scale);
#endif
}
#endif

}  // namespace detail

namespace detail {
// dropout_apply() on the calling thread only: for callers that already split the work across
// threads (a parallel region inside another costs a team start-up per call with libgomp, which
// made the layer's residual + dropout pass, 768 chunks per call, 2.4x slower).
template <class In, class Out>
void dropout_span(const In* x, Out* y, std::size_t n, std::size_t offset, float rate, const DropoutKey& key) {
  using A = arith_t<In>;
  if (rate <= 0.0f) {
    if (static_cast<const void*>(x) != static_cast<const void*>(y))
      for (std::size_t i = 0; i < n; ++i) y[i] = Out(A(x[i]));
    return;
  }
  const A scale = A(1) / (A(1) - static_cast<A>(rate));
  const auto step = static_cast<std::uint64_t>(key.step);
  const std::size_t first = offset, last = offset + n;
  // One block of four elements, edges clipped.
  auto one_block = [&](std::uint64_t b) {
    const U32x4 r = dropout_block(key.seed, step, static_cast<std::uint32_t>(key.site), key.layer, b);
    for (int w = 0; w < 4; ++w) {
      const std::size_t e = static_cast<std::size_t>(b) * 4 + static_cast<std::size_t>(w);
      if (e < first || e >= last) continue;
      const std::size_t i = e - first;
      y[i] = Out(dropout_keeps(r.v[w], rate) ? A(x[i]) * scale : A(0));
    }
  };
  constexpr std::size_t kGroup = 4 * kDropoutLanes;  // elements per group of blocks
  const std::size_t g0 = (first + kGroup - 1) / kGroup, g1 = last / kGroup;  // whole groups inside
  if (g1 <= g0) {
    for (std::uint64_t b = first / 4; b < (last + 3) / 4; ++b) one_block(b);
    return;
  }
  for (std::uint64_t b = first / 4; b < g0 * kGroup / 4; ++b) one_block(b);
  for (std::size_t g = g0; g < g1; ++g) {
    std::uint32_t w[4][kDropoutLanes];
    dropout_blocks(key, static_cast<std::uint64_t>(g) * kDropoutLanes, w);
    const std::size_t base = g * kGroup - first;
#if defined(__AVX512F__) || defined(__AVX2__)
    if constexpr (std::is_same_v<A, float>) {  // the 64 elements through float registers
      if constexpr (std::is_same_v<In, float> && std::is_same_v<Out, float>) {
        dropout_select_group(w, x + base, y + base, rate, scale);
      } else {
        alignas(64) float in[kGroup], out[kGroup];
        for (std::size_t i = 0; i < kGroup; ++i) in[i] = float(x[base + i]);
        dropout_select_group(w, in, out, rate, scale);
        for (std::size_t i = 0; i < kGroup; ++i) y[base + i] = Out(out[i]);
      }
      continue;
    }
#endif
    for (int lane = 0; lane < kDropoutLanes; ++lane)
      for (int k = 0; k < 4; ++k) {
        const std::size_t i = base + static_cast<std::size_t>(lane) * 4 + static_cast<std::size_t>(k);
        y[i] = Out(dropout_keeps(w[k][lane], rate) ? A(x[i]) * scale : A(0));
      }
  }
  for (std::uint64_t b = g1 * kGroup / 4; b < (last + 3) / 4; ++b) one_block(b);
}
}  // namespace detail

// y = x * mask / (1 - rate) over n elements starting at element `offset` of the site's stream.
// In place is allowed (x == y). Used for both directions: the backward of dropout is dropout of
// the gradient with the same mask. Element e keeps when dropout_keeps(word e % 4 of block e / 4):
// the mask every backend draws (pld/core/random.hpp); whole groups of 16 blocks go through the
// vectorized Philox, the ragged ends block by block. In and Out are float, double or bf16
// (arithmetic in arith_t<In>; a bf16 output is rounded once). Large n is split across OpenMP
// threads at fixed element boundaries (multiples of 4096 of the stream: whole groups), so the
// bits do not depend on the thread count.
template <class In, class Out>
void dropout_apply(const In* x, Out* y, std::size_t n, std::size_t offset, float rate, const DropoutKey& key) {
  constexpr std::size_t kPart = 4096;  // a multiple of the 64 elements of a group
  const std::size_t p0 = offset / kPart, p1 = (offset + n + kPart - 1) / kPart;
  if (n <= 4 * kPart || p1 - p0 < 2) {
    detail::dropout_span(x, y, n, offset, rate, key);
    return;
  }
#pragma omp parallel for schedule(static)
  for (std::ptrdiff_t p = static_cast<std::ptrdiff_t>(p0); p < static_cast<std::ptrdiff_t>(p1); ++p) {
    const std::size_t b = std::max(static_cast<std::size_t>(p) * kPart, offset), e = std::min((static_cast<std::size_t>(p) + 1) * kPart, offset + n);
    detail::dropout_span(x + (b - offset), y + (b - offset), e - b, b, rate, key);
  }
}

}  // namespace pld::cpu
