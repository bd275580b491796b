// The CPU backend's matrix products: row-major, up to two batch dimensions with arbitrary strides
// (the attention heads live inside the packed QKV rows), an optional bias and C += accumulation.
// With oneDNN (PLD_HAS_ONEDNN, pld::cpu links it where it is found) a float product runs as a
// oneDNN matmul, in fp32 or with bf16 operands and fp32 accumulation; the primitive is created
// once per shape and kept in the Gemm object, which each layer owns (no global state). Without
// oneDNN, and always for double (gradient checks), Eigen's own GEMM runs.
//
// Why oneDNN and not Eigen-on-BLAS: oneDNN picks its kernel from the CPU it runs on (AMX, AVX-512
// BF16, AVX-512, AVX2) and reports it; Debian's OpenBLAS 0.3.21 mis-detects recent Xeons as a
// generic core and runs ~5x slower there (docs/cpu_layer.md).
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "pld/core/error.hpp"
#include "pld/cpu/bf16.hpp"
#include "pld/cpu/precision.hpp"
#include "pld/layer/products.hpp"

#if defined(PLD_HAS_ONEDNN)
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace pld::cpu {

// C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) [+ bias (n) on every row] [+ C when accumulate],
// for every (i, j) < batch: A at a + i * a_batch[0] + j * a_batch[1], and so on. Rows of the
// stored matrices are ld* apart; a transposed operand is stored (k, m) for A and (n, k) for B.
// Give a batch dimension of size 1 a real stride, not 0: oneDNN 2.6 reads a zero stride as a
// broadcast and falls back to its reference kernel (found by bench_cpu_layer: 35x slower).
struct GemmShape {
  int m = 0, n = 0, k = 0;
  bool trans_a = false, trans_b = false;
  std::int64_t lda = 0, ldb = 0, ldc = 0;
  std::array<int, 2> batch{1, 1};
  std::array<std::int64_t, 2> a_batch{0, 0}, b_batch{0, 0}, c_batch{0, 0};

  // A plain (m, k) x op(B) product, densely stored: C = A B (trans_b: A B^T).
  static GemmShape plain(int m, int n, int k, bool trans_a, bool trans_b) {
    GemmShape s;
    s.m = m;
    s.n = n;
    s.k = k;
    s.trans_a = trans_a;
    s.trans_b = trans_b;
    s.lda = trans_a ? m : k;
    s.ldb = trans_b ? k : n;
    s.ldc = n;
    return s;
  }
  auto key() const { return std::make_tuple(m, n, k, trans_a, trans_b, lda, ldb, ldc, batch, a_batch, b_batch, c_batch); }
  double flops() const { return 2.0 * m * n * static_cast<double>(k) * batch[0] * batch[1]; }
};

// A MatMul (pld/layer/products.hpp) as a GemmShape: both are row-major.
inline GemmShape gemm_shape(const MatMul& mm) {
  GemmShape s;
  s.m = mm.m;
  s.n = mm.n;
  s.k = mm.k;
  s.trans_a = mm.trans_x;
  s.trans_b = mm.trans_y;
  s.lda = mm.ldx;
  s.ldb = mm.ldy;
  s.ldc = mm.ldd;
  if (mm.batch2 > 1) {  // (batch, heads) with the heads read in place
    s.batch = {mm.batch, mm.batch2};
    s.a_batch = {mm.stride_x, mm.stride2_x};
    s.b_batch = {mm.stride_y, mm.stride2_y};
    s.c_batch = {mm.stride_d, mm.stride2_d};
    return s;
  }
  // One batch dimension, the inner one; the outer (size 1) gets the stride a dense layout would
  // have: oneDNN picks its reference kernel for zero strides.
  s.batch = {1, mm.batch};
  s.a_batch = {mm.stride_x * mm.batch, mm.stride_x};
  s.b_batch = {mm.stride_y * mm.batch, mm.stride_y};
  s.c_batch = {mm.stride_d * mm.batch, mm.stride_d};
  return s;
}

inline void check_gemm_shape(const GemmShape& s) {
  if (s.m <= 0 || s.n <= 0 || s.k <= 0 || s.batch[0] <= 0 || s.batch[1] <= 0)
    pld::detail::throw_error("gemm: dimensions must be > 0 (m ", s.m, ", n ", s.n, ", k ", s.k, ", batch ", s.batch[0], "x", s.batch[1], ")");
  if (s.lda < (s.trans_a ? s.m : s.k) || s.ldb < (s.trans_b ? s.k : s.n) || s.ldc < s.n)
    pld::detail::throw_error("gemm: a leading dimension is smaller than its row (lda ", s.lda, ", ldb ", s.ldb, ", ldc ", s.ldc, ")");
}

namespace detail {

// Eigen's product, one batch entry at a time: the path for double and for builds without oneDNN.
template <class Scalar>
void eigen_gemm(const GemmShape& s, const Scalar* a, const Scalar* b, Scalar* c, Scalar alpha, bool accumulate, const Scalar* bias) {
  using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using CMap = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using MMap = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  for (int i = 0; i < s.batch[0]; ++i)
    for (int j = 0; j < s.batch[1]; ++j) {
      const Scalar* ai = a + i * s.a_batch[0] + j * s.a_batch[1];
      const Scalar* bi = b + i * s.b_batch[0] + j * s.b_batch[1];
      Scalar* ci = c + i * s.c_batch[0] + j * s.c_batch[1];
      CMap A(ai, s.trans_a ? s.k : s.m, s.trans_a ? s.m : s.k, Eigen::OuterStride<>(s.lda));
      CMap B(bi, s.trans_b ? s.n : s.k, s.trans_b ? s.k : s.n, Eigen::OuterStride<>(s.ldb));
      MMap C(ci, s.m, s.n, Eigen::OuterStride<>(s.ldc));
      auto product = [&](const auto& opa, const auto& opb) {
        if (accumulate) C.noalias() += alpha * (opa * opb);
        else if (alpha == Scalar(1)) C.noalias() = opa * opb;
        else C.noalias() = alpha * (opa * opb);
      };
      if (s.trans_a && s.trans_b) product(A.transpose(), B.transpose());
      else if (s.trans_a) product(A.transpose(), B);
      else if (s.trans_b) product(A, B.transpose());
      else product(A, B);
      if (bias) C.rowwise() += Eigen::Map<const Eigen::Matrix<Scalar, 1, Eigen::Dynamic>>(bias, s.n);
    }
}

}  // namespace detail

// Whether this build runs float products on oneDNN.
constexpr bool has_onednn() {
#if defined(PLD_HAS_ONEDNN)
  return true;
#else
  return false;
#endif
}

// Whether the CPU multiplies bf16 in hardware, as oneDNN sees it (false without oneDNN).
inline bool cpu_has_native_bf16() {
#if defined(PLD_HAS_ONEDNN)
  const auto isa = dnnl::get_effective_cpu_isa();
  return isa == dnnl::cpu_isa::avx512_core_bf16 || isa == dnnl::cpu_isa::avx512_core_amx;
#else
  return false;
#endif
}

// Whether oneDNN has a bf16 matmul on this CPU: 2.6 has one from AVX-512 up (in hardware with
// AVX512-BF16 or AMX, emulated on plain AVX-512), none below (AVX2, e.g. AMD EPYC Zen 3). Without
// one, Gemm widens bf16 operands for the fp32 kernel (same arithmetic, no speed gain). False
// without oneDNN.
inline bool onednn_has_bf16_matmul() {
#if defined(PLD_HAS_ONEDNN)
  static const bool has = [] {
    using dt = dnnl::memory::data_type;
    const dnnl::memory::desc a({2, 2}, dt::bf16, dnnl::memory::dims{2, 1}), c({2, 2}, dt::f32, dnnl::memory::dims{2, 1});
    try {
      const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, a, c), dnnl::engine(dnnl::engine::kind::cpu, 0));
      return true;
    } catch (const dnnl::error&) {
      return false;
    }
  }();
  return has;
#else
  return false;
#endif
}

// The ISA oneDNN dispatches to on this CPU ("eigen" without oneDNN).
inline std::string cpu_isa_name() {
#if defined(PLD_HAS_ONEDNN)
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::sse41: return "sse41";
    default: return "other";
  }
#else
  return "eigen";
#endif
}

// `native` resolved on this machine.
inline Precision resolve_precision(Precision p) {
  if (p != Precision::native) return p;
  return cpu_has_native_bf16() ? Precision::bf16 : Precision::fp32;
}

class Gemm {
 public:
  explicit Gemm(Precision precision = Precision::fp32) : precision_(resolve_precision(precision)) {
    if (precision_ == Precision::bf16 && !has_onednn())
      pld::detail::throw_error("bf16 products need oneDNN: this build of pld::cpu has none (install libdnnl-dev and reconfigure)");
  }
  Gemm(const Gemm&) = delete;
  Gemm& operator=(const Gemm&) = delete;
  Gemm(Gemm&&) = default;
  Gemm& operator=(Gemm&&) = default;

  Precision precision() const { return precision_; }

  // What ran the last float product: "oneDNN brg:avx512_core_amx (bf16)", "Eigen (fp32)", ...
  const std::string& last_implementation() const { return last_impl_; }
  // Float products run so far, and their FLOPs.
  std::int64_t calls() const { return calls_; }

  // Stable operands (bf16 products): a float buffer the caller promises not to change until it
  // is released has its bf16 copy made at its first product and reused by the later ones with
  // the same stored layout (a weight in the forward and in the backward's dx product; a saved
  // activation in the forward and in the backward's weight-gradient product; dy in both
  // products of a linear backward). Nothing changes for fp32 or Eigen products. Buffers keep
  // their memory between steps (layers use the same addresses every step).
  void keep_converted(const float* p) { converted_[p].stable = true; }
  void release_converted(const float* p) {
    auto it = converted_.find(p);
    if (it != converted_.end()) it->second.stable = it->second.valid = false;
  }
  void release_all_converted() {
    for (auto& e : converted_) e.second.stable = e.second.valid = false;
  }
  // Releases every stable operand and frees the copies' memory (a dropped layer holds none).
  void free_converted() { converted_.clear(); }
  // Bytes held by the stable operands' bf16 copies.
  std::size_t converted_bytes() const {
    std::size_t n = 0;
    for (const auto& e : converted_) n += e.second.data.capacity() * sizeof(std::uint16_t) + e.second.wide.capacity() * sizeof(float);
    return n;
  }
  // bf16 conversions made so far (a test counts them: a stable operand is converted once).
  std::int64_t conversions() const { return conversions_; }

  // C = alpha op(A) op(B) [+ bias] [+ C if accumulate]. Scalar float or double (double: Eigen).
  template <class Scalar>
  void run(const GemmShape& s, const Scalar* a, const Scalar* b, Scalar* c, Scalar alpha = Scalar(1), bool accumulate = false,
           const Scalar* bias = nullptr) {
    check_gemm_shape(s);
    ++calls_;
#if defined(PLD_HAS_ONEDNN)
    if constexpr (std::is_same<Scalar, float>::value) {
      run_onednn(s, a, b, c, alpha, accumulate, bias);
      return;
    }
#endif
    if (std::is_same<Scalar, float>::value && last_impl_.empty()) last_impl_ = "Eigen (fp32)";
    detail::eigen_gemm(s, a, b, c, alpha, accumulate, bias);
  }

  // bf16 storage (pld::cpu::SharedPreLnLayer<bf16>): C = alpha op(A) op(B) [+ bias] [+ C] with A
  // and B read in place as bf16 (no conversion), C bf16 or fp32 (c_fp32), the bias fp32,
  // accumulation fp32. Needs oneDNN; independent of this Gemm's precision.
  void run_bf16(const GemmShape& s, const bf16* a, const bf16* b, void* c, bool c_fp32, float alpha = 1.0f, bool accumulate = false,
                const float* bias = nullptr) {
    check_gemm_shape(s);
#if defined(PLD_HAS_ONEDNN)
    ++calls_;
    const auto key = std::make_tuple(s.key(), accumulate, bias != nullptr, alpha, c_fp32);
    auto it = bf16_plans_.find(key);
    if (it == bf16_plans_.end())
      it = bf16_plans_.emplace(key, make_plan_with(s, alpha, accumulate, bias != nullptr, dt::bf16, c_fp32 ? dt::f32 : dt::bf16, s.lda, s.ldb,
                                                   s.a_batch, s.b_batch, " (bf16 storage)"))
               .first;
    Plan& p = it->second;
    if (!p.widened) {
      execute(p, const_cast<bf16*>(a), const_cast<bf16*>(b), c, bias);
      return;
    }
    // No bf16 matmul on this CPU: dense fp32 copies of the operands (and of a bf16 C) around the
    // fp32 kernel; a bf16 C is rounded once, after the accumulation.
    const auto widen = [](bf16 x) { return to_float(x); };
    const int ar = s.trans_a ? s.k : s.m, ac = s.trans_a ? s.m : s.k;
    const int br = s.trans_b ? s.n : s.k, bc = s.trans_b ? s.k : s.n;
    pack(s, a, ar, ac, s.lda, s.a_batch, a32_, widen);
    pack(s, b, br, bc, s.ldb, s.b_batch, b32_, widen);
    if (!p.c_staged) {
      execute(p, a32_.data(), b32_.data(), c, bias);
      return;
    }
    bf16* cb = static_cast<bf16*>(c);
    if (accumulate) pack(s, static_cast<const bf16*>(cb), s.m, s.n, s.ldc, s.c_batch, c32_, widen);
    else c32_.resize(static_cast<std::size_t>(s.m) * s.n * s.batch[0] * s.batch[1]);
    execute(p, a32_.data(), b32_.data(), c32_.data(), bias);
    unpack_bf16(s, c32_, cb);
#else
    (void)a, (void)b, (void)c, (void)c_fp32, (void)alpha, (void)accumulate, (void)bias;
    pld::detail::throw_error("bf16 storage needs oneDNN: this build of pld::cpu has none (install libdnnl-dev and reconfigure)");
#endif
  }

 private:
#if defined(PLD_HAS_ONEDNN)
  using dims = dnnl::memory::dims;
  using dt = dnnl::memory::data_type;

  struct Plan {
    dnnl::matmul prim;
    dnnl::memory::desc a_md, b_md, c_md, bias_md;
    std::string impl;
    // oneDNN has no bf16 matmul on this CPU (2.6 has none below AVX-512, e.g. on AVX2-only AMD
    // EPYC): the bf16 operands are widened into dense fp32 copies for the fp32 kernel. A product
    // of two bf16 values is exact in fp32, so this is the same arithmetic as a bf16 kernel with
    // fp32 accumulation, summed in another order. c_staged: C is bf16, computed into a dense fp32
    // copy and rounded into place.
    bool widened = false, c_staged = false;
  };

  void execute(Plan& p, void* a, void* b, void* c, const float* bias) {
    dnnl::memory am(p.a_md, engine_, a), bm(p.b_md, engine_, b), cm(p.c_md, engine_, c);
    std::unordered_map<int, dnnl::memory> args{{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}};
    if (bias) args.emplace(DNNL_ARG_BIAS, dnnl::memory(p.bias_md, engine_, const_cast<float*>(bias)));
    p.prim.execute(stream_, args);
    stream_.wait();
    last_impl_ = p.impl;
  }

  // dims (b0, b1, rows, cols) with the stored strides; rank 2 when there is no batch.
  static dnnl::memory::desc desc(const GemmShape& s, int rows, int cols, std::int64_t row_stride, std::int64_t col_stride,
                                 const std::array<std::int64_t, 2>& batch_strides, dt type) {
    if (s.batch[0] == 1 && s.batch[1] == 1) return dnnl::memory::desc(dims{rows, cols}, type, dims{row_stride, col_stride});
    return dnnl::memory::desc(dims{s.batch[0], s.batch[1], rows, cols}, type,
                              dims{batch_strides[0], batch_strides[1], row_stride, col_stride});
  }

  // A stored operand (rows x cols with row stride ld, per batch entry) copied densely, each value
  // converted by `cvt` (to bf16 bits, rounded to bf16 in fp32, or widened from bf16).
  template <class In, class Out, class Convert>
  static void pack(const GemmShape& s, const In* src, int rows, int cols, std::int64_t ld, const std::array<std::int64_t, 2>& bs,
                   std::vector<Out>& dst, Convert cvt) {
    const std::int64_t per = static_cast<std::int64_t>(rows) * cols;
    dst.resize(static_cast<std::size_t>(per * s.batch[0] * s.batch[1]));
    const int entries = s.batch[0] * s.batch[1];
#pragma omp parallel for schedule(static) collapse(2) if (per * entries > 32768)
    for (int e = 0; e < entries; ++e)
      for (int r = 0; r < rows; ++r) {
        const In* in = src + (e / s.batch[1]) * bs[0] + (e % s.batch[1]) * bs[1] + r * ld;
        Out* out = dst.data() + e * per + static_cast<std::int64_t>(r) * cols;
#pragma omp simd
        for (int x = 0; x < cols; ++x) out[x] = cvt(in[x]);
      }
  }
  // A widened plan's dense fp32 C rounded into the stored bf16 C (s.ldc, s.c_batch).
  static void unpack_bf16(const GemmShape& s, const std::vector<float>& src, bf16* c) {
    const std::int64_t per = static_cast<std::int64_t>(s.m) * s.n;
    const int entries = s.batch[0] * s.batch[1];
#pragma omp parallel for schedule(static) collapse(2) if (per * entries > 32768)
    for (int e = 0; e < entries; ++e)
      for (int r = 0; r < s.m; ++r) {
        const float* in = src.data() + e * per + static_cast<std::int64_t>(r) * s.n;
        bf16* out = c + (e / s.batch[1]) * s.c_batch[0] + (e % s.batch[1]) * s.c_batch[1] + r * s.ldc;
#pragma omp simd
        for (int x = 0; x < s.n; ++x) out[x].bits = detail::to_bf16_bits(in[x]);
      }
  }

  // The operand rounded to bf16, densely: bf16 bits for a bf16 kernel, or the rounded values in
  // fp32 for a widened plan. The stable copy when src is kept and its copy has this layout, else
  // a fresh conversion into `scratch`.
  template <class Out>
  Out* converted(const GemmShape& s, const float* src, int rows, int cols, std::int64_t ld, const std::array<std::int64_t, 2>& bs,
                 std::vector<Out>& scratch) {
    constexpr bool wide = std::is_same<Out, float>::value;
    const auto convert = [&](std::vector<Out>& dst) {
      if constexpr (wide) pack(s, src, rows, cols, ld, bs, dst, [](float x) { return detail::from_bf16_bits(detail::to_bf16_bits(x)); });
      else pack(s, src, rows, cols, ld, bs, dst, [](float x) { return detail::to_bf16_bits(x); });
      ++conversions_;
    };
    const auto layout = std::make_tuple(rows, cols, ld, s.batch[0], s.batch[1], bs[0], bs[1], wide);
    auto it = converted_.find(src);
    if (it != converted_.end() && it->second.stable) {
      Converted& e = it->second;
      std::vector<Out>& data = e.template copy<Out>();
      if (!e.valid || e.layout != layout) {
        convert(data);
        e.layout = layout;
        e.valid = true;
      }
      return data.data();
    }
    convert(scratch);
    return scratch.data();
  }

  void run_onednn(const GemmShape& s, const float* a, const float* b, float* c, float alpha, bool accumulate, const float* bias) {
    const bool bf16 = precision_ == Precision::bf16;
    const auto key = std::make_tuple(s.key(), accumulate, bias != nullptr, alpha, bf16);
    auto it = plans_.find(key);
    if (it == plans_.end()) it = plans_.emplace(key, make_plan(s, alpha, accumulate, bias != nullptr, bf16)).first;
    Plan& p = it->second;
    const int ar = s.trans_a ? s.k : s.m, ac = s.trans_a ? s.m : s.k;  // A as stored
    const int br = s.trans_b ? s.n : s.k, bc = s.trans_b ? s.k : s.n;  // B as stored
    if (!bf16) execute(p, const_cast<float*>(a), const_cast<float*>(b), c, bias);
    else if (p.widened) execute(p, converted(s, a, ar, ac, s.lda, s.a_batch, a32_), converted(s, b, br, bc, s.ldb, s.b_batch, b32_), c, bias);
    else execute(p, converted(s, a, ar, ac, s.lda, s.a_batch, a16_), converted(s, b, br, bc, s.ldb, s.b_batch, b16_), c, bias);
  }

  // The row and batch strides of the operands (and C) packed densely.
  struct Dense {
    std::int64_t lda, ldb;
    std::array<std::int64_t, 2> a_batch, b_batch, c_batch;
    explicit Dense(const GemmShape& s) {
      const std::int64_t ar = s.trans_a ? s.k : s.m, ac = s.trans_a ? s.m : s.k;
      const std::int64_t br = s.trans_b ? s.n : s.k, bc = s.trans_b ? s.k : s.n;
      lda = ac;
      ldb = bc;
      a_batch = {ar * ac * s.batch[1], ar * ac};
      b_batch = {br * bc * s.batch[1], br * bc};
      c_batch = {static_cast<std::int64_t>(s.m) * s.n * s.batch[1], static_cast<std::int64_t>(s.m) * s.n};
    }
  };

  Plan make_plan(const GemmShape& s, float alpha, bool accumulate, bool has_bias, bool bf16) {
    // bf16 operands are repacked densely (converted), f32 ones are read in place.
    if (!bf16) return make_plan_with(s, alpha, accumulate, has_bias, dt::f32, dt::f32, s.lda, s.ldb, s.a_batch, s.b_batch, " (fp32)");
    const Dense d(s);
    return make_plan_with(s, alpha, accumulate, has_bias, dt::bf16, dt::f32, d.lda, d.ldb, d.a_batch, d.b_batch, " (bf16)");
  }

  // The primitive for operands of type `in` with the given row strides (lda, ldb) and batch
  // strides, C of type `out` in place with s.ldc and s.c_batch, an fp32 bias. Where oneDNN has no
  // bf16 matmul, a widened plan (Plan::widened) over dense fp32 operands.
  Plan make_plan_with(const GemmShape& s, float alpha, bool accumulate, bool has_bias, dt in, dt out, std::int64_t lda, std::int64_t ldb,
                      const std::array<std::int64_t, 2>& abs, const std::array<std::int64_t, 2>& bbs, const char* label) {
    Plan p;
    std::string why;
    if (create(p, s, alpha, accumulate, has_bias, in, out, lda, ldb, abs, bbs, s.ldc, s.c_batch, why)) {
      p.impl = "oneDNN " + p.impl + label;
      return p;
    }
    if (in == dt::bf16) {
      const Dense d(s);
      const bool staged = out == dt::bf16;
      if (create(p, s, alpha, accumulate, has_bias, dt::f32, dt::f32, d.lda, d.ldb, d.a_batch, d.b_batch, staged ? s.n : s.ldc,
                 staged ? d.c_batch : s.c_batch, why)) {
        p.impl = "oneDNN " + p.impl + " (bf16 operands widened to fp32: oneDNN has no bf16 matmul on this CPU)";
        p.widened = true;
        p.c_staged = staged;
        return p;
      }
    }
    pld::detail::throw_error("gemm: oneDNN has no matmul for m ", s.m, " n ", s.n, " k ", s.k, " batch ", s.batch[0], "x", s.batch[1], " (", why, ")");
  }

  // Creates p's primitive; false, with oneDNN's reason, where it has none for these types and layouts.
  bool create(Plan& p, const GemmShape& s, float alpha, bool accumulate, bool has_bias, dt in, dt out, std::int64_t lda, std::int64_t ldb,
              const std::array<std::int64_t, 2>& abs, const std::array<std::int64_t, 2>& bbs, std::int64_t ldc,
              const std::array<std::int64_t, 2>& cbs, std::string& why) {
    // Logical A (m, k) and B (k, n); a transposed operand is the stored one with swapped strides.
    p.a_md = s.trans_a ? desc(s, s.m, s.k, 1, lda, abs, in) : desc(s, s.m, s.k, lda, 1, abs, in);
    p.b_md = s.trans_b ? desc(s, s.k, s.n, 1, ldb, bbs, in) : desc(s, s.k, s.n, ldb, 1, bbs, in);
    p.c_md = desc(s, s.m, s.n, ldc, 1, cbs, out);
    if (has_bias) {
      const bool batched = !(s.batch[0] == 1 && s.batch[1] == 1);
      p.bias_md = batched ? dnnl::memory::desc(dims{1, 1, 1, s.n}, dt::f32, dims{s.n, s.n, s.n, 1})
                          : dnnl::memory::desc(dims{1, s.n}, dt::f32, dims{s.n, 1});
    }
    dnnl::primitive_attr attr;
    if (alpha != 1.0f) attr.set_output_scales(0, {alpha});
    if (accumulate) {
      dnnl::post_ops po;
      po.append_sum(1.0f);
      attr.set_post_ops(po);
    }
    try {
      const auto d = has_bias ? dnnl::matmul::desc(p.a_md, p.b_md, p.bias_md, p.c_md) : dnnl::matmul::desc(p.a_md, p.b_md, p.c_md);
      const dnnl::matmul::primitive_desc pd(d, attr, engine_);
      p.prim = dnnl::matmul(pd);
      p.impl = pd.impl_info_str();
      return true;
    } catch (const dnnl::error& e) {
      why = e.what();
      return false;
    }
  }

  dnnl::engine engine_{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream_{engine_};
  std::map<std::tuple<decltype(GemmShape{}.key()), bool, bool, float, bool>, Plan> plans_;
  std::map<std::tuple<decltype(GemmShape{}.key()), bool, bool, float, bool>, Plan> bf16_plans_;  // bf16 storage
  std::vector<std::uint16_t> a16_, b16_;
  std::vector<float> a32_, b32_, c32_;  // widened plans: dense fp32 operands and the staged C
#endif
  // Stable operands' bf16 copies (only filled by oneDNN's bf16 products): bf16 bits, or the
  // rounded values in fp32 for a widened plan.
  struct Converted {
    bool stable = false, valid = false;
    std::tuple<int, int, std::int64_t, int, int, std::int64_t, std::int64_t, bool> layout{};
    std::vector<std::uint16_t> data;
    std::vector<float> wide;
    template <class Out>
    std::vector<Out>& copy() {
      if constexpr (std::is_same<Out, float>::value) return wide;
      else return data;
    }
  };
  std::map<const float*, Converted> converted_;
  std::int64_t conversions_ = 0;
  Precision precision_;
  std::string last_impl_;
  std::int64_t calls_ = 0;
};

}  // namespace pld::cpu
