// cuBLASLt matrix products in the CUTLASS shape: describe the problem (GemmProblem), check it and
// pick an algorithm once (GemmPlan), then run it on the caller's stream with the caller's
// workspace. Column-major, as cuBLAS sees memory. lt_problem() translates the layer's row-major
// products (pld::MatMul, pld/layer/products.hpp) and ProductPlan<T> is the plan the layer's
// logic uses; row_major_* build the same problems directly. Handles and descriptors are RAII
// objects; every status is checked.
#pragma once

#include <cstddef>
#include <algorithm>
#include <cstdint>
#include <utility>

#include <cublasLt.h>

#include "pld/core/error.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/storage.hpp"
#include "pld/layer/products.hpp"

namespace pld::cuda {

class LtHandle {
 public:
  LtHandle() { check(cublasLtCreate(&h_), "cublasLtCreate"); }
  LtHandle(const LtHandle&) = delete;
  LtHandle& operator=(const LtHandle&) = delete;
  ~LtHandle() { cublasLtDestroy(h_); }
  cublasLtHandle_t get() const { return h_; }

 private:
  cublasLtHandle_t h_ = nullptr;
};

// What the product does after the multiply (pld::Epilogue): in cuBLASLt's column-major terms the
// bias is a vector over the rows of D (m); the GELU auxiliary matrix (the GELU input, saved for
// the backward) has D's shape and aux_ld. cuBLASLt's GELU is the tanh approximation, so these fit
// GeluForm::tanh only.
using pld::Epilogue;

// D = alpha op(A) op(B) + beta C, with C = D in place. m x n output, k the reduction.
struct GemmProblem {
  bool trans_a = false, trans_b = false;
  int m = 0, n = 0, k = 0;
  std::int64_t lda = 0, ldb = 0, ldd = 0;
  int batch = 1;  // strided batch: matrix i starts i * stride elements further
  std::int64_t stride_a = 0, stride_b = 0, stride_d = 0;
  cudaDataType_t ab_type = CUDA_R_32F;  // A and B
  cudaDataType_t d_type = CUDA_R_32F;   // C and D (fp32 for accumulated weight gradients)
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  Epilogue epilogue = Epilogue::none;
  std::int64_t aux_ld = 0;
  // Alignment in bytes every A, B and D pointer of run() has (at most 256): cuBLASLt picks
  // vectorised algorithms from it. Batched operands are further limited by their stride.
  int align_bytes = 256;

  int rows_a() const { return trans_a ? k : m; }
  int cols_a() const { return trans_a ? m : k; }
  int rows_b() const { return trans_b ? n : k; }
  int cols_b() const { return trans_b ? k : n; }

  // Throws pld::Error naming the first thing cuBLASLt would reject or we do not support.
  void check() const {
    if (m <= 0 || n <= 0 || k <= 0) pld::detail::throw_error("GEMM: m, n, k must be > 0, got ", m, ", ", n, ", ", k);
    if (batch <= 0) pld::detail::throw_error("GEMM: batch must be > 0, got ", batch);
    if (lda < rows_a() || ldb < rows_b() || ldd < m)
      pld::detail::throw_error("GEMM: leading dimension too small (lda ", lda, " ldb ", ldb, " ldd ", ldd,
                               " for m ", m, " n ", n, " k ", k, ")");
    if ((epilogue == Epilogue::bias_gelu_aux || epilogue == Epilogue::dgelu) && (aux_ld % 8 != 0 || aux_ld < m))
      pld::detail::throw_error("GEMM: the GELU auxiliary leading dimension must be a multiple of 8 and >= m, got ", aux_ld);
    if (epilogue != Epilogue::none && batch != 1)
      pld::detail::throw_error("GEMM: epilogues are used on unbatched products only");
  }
};

// RAII wrappers of the three descriptor kinds.
namespace detail {
using pld::pow2_alignment;

inline std::size_t element_bytes(cudaDataType_t t) {
  switch (t) {
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    case CUDA_R_64F: return 8;
    default: return 4;
  }
}

struct MatmulDesc {
  cublasLtMatmulDesc_t d = nullptr;
  MatmulDesc(cublasComputeType_t compute) { check(cublasLtMatmulDescCreate(&d, compute, CUDA_R_32F), "cublasLtMatmulDescCreate"); }
  MatmulDesc(const MatmulDesc&) = delete;
  MatmulDesc& operator=(const MatmulDesc&) = delete;
  ~MatmulDesc() { if (d) cublasLtMatmulDescDestroy(d); }
  template <class V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& v) {
    check(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(V)), "cublasLtMatmulDescSetAttribute");
  }
};
struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType_t type, int rows, int cols, std::int64_t ld, int batch, std::int64_t stride) {
    check(cublasLtMatrixLayoutCreate(&l, type, static_cast<std::uint64_t>(rows), static_cast<std::uint64_t>(cols), ld),
          "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      const std::int32_t count = batch;
      check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count)), "cublasLtMatrixLayoutSetAttribute");
      check(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)),
            "cublasLtMatrixLayoutSetAttribute");
    }
  }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
  ~Layout() { if (l) cublasLtMatrixLayoutDestroy(l); }
};
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  explicit Preference(std::size_t workspace) {
    check(cublasLtMatmulPreferenceCreate(&p), "cublasLtMatmulPreferenceCreate");
    const std::uint64_t ws = workspace;
    check(cublasLtMatmulPreferenceSetAttribute(p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
          "cublasLtMatmulPreferenceSetAttribute");
  }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  ~Preference() { if (p) cublasLtMatmulPreferenceDestroy(p); }
};

inline cublasLtEpilogue_t to_lt(Epilogue e) {
  switch (e) {
    case Epilogue::bias: return CUBLASLT_EPILOGUE_BIAS;
    case Epilogue::bias_gelu_aux: return CUBLASLT_EPILOGUE_GELU_AUX_BIAS;
    case Epilogue::dgelu: return CUBLASLT_EPILOGUE_DGELU;
    default: return CUBLASLT_EPILOGUE_DEFAULT;
  }
}
}  // namespace detail

// cuBLASLt workspace the plans may use: NVIDIA recommends 32 MiB on Hopper.
constexpr std::size_t kLtWorkspaceBytes = std::size_t{32} << 20;

// A checked problem with its algorithm chosen once (cublasLtMatmulAlgoGetHeuristic). The bias and
// auxiliary pointers are set per run; the heuristic assumes the 256-byte alignment the layer's
// buffers have.
class GemmPlan {
 public:
  GemmPlan(const LtHandle& handle, const GemmProblem& p, std::size_t workspace_bytes = kLtWorkspaceBytes)
      : problem_((p.check(), p)),
        desc_(p.compute),
        a_(p.ab_type, p.rows_a(), p.cols_a(), p.lda, p.batch, p.stride_a),
        b_(p.ab_type, p.rows_b(), p.cols_b(), p.ldb, p.batch, p.stride_b),
        d_(p.d_type, p.m, p.n, p.ldd, p.batch, p.stride_d),
        workspace_bytes_(workspace_bytes) {
    const cublasOperation_t ta = p.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
    desc_.set(CUBLASLT_MATMUL_DESC_TRANSA, ta);
    desc_.set(CUBLASLT_MATMUL_DESC_TRANSB, tb);
    desc_.set(CUBLASLT_MATMUL_DESC_EPILOGUE, detail::to_lt(p.epilogue));
    if (p.epilogue == Epilogue::bias_gelu_aux || p.epilogue == Epilogue::dgelu) desc_.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, p.aux_ld);
    detail::Preference pref(workspace_bytes);
    // What the heuristic may assume of the pointers: the caller's alignment, limited by the batch
    // stride for batched operands (matrix i starts i * stride elements after the first).
    const auto ab = static_cast<std::int64_t>(detail::element_bytes(p.ab_type));
    const auto db = static_cast<std::int64_t>(detail::element_bytes(p.d_type));
    auto limit = [&](std::int64_t stride_bytes) {
      std::uint32_t a = detail::pow2_alignment(p.align_bytes);
      if (p.batch > 1) a = std::min(a, detail::pow2_alignment(stride_bytes));
      return a;
    };
    align_[0] = limit(p.stride_a * ab);
    align_[1] = limit(p.stride_b * ab);
    align_[2] = limit(p.stride_d * db);
    const cublasLtMatmulPreferenceAttributes_t attrs[4] = {
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
        CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    const std::uint32_t values[4] = {align_[0], align_[1], align_[2], align_[2]};
    for (int i = 0; i < 4; ++i)
      check(cublasLtMatmulPreferenceSetAttribute(pref.p, attrs[i], &values[i], sizeof(values[i])),
            "cublasLtMatmulPreferenceSetAttribute");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(handle.get(), desc_.d, a_.l, b_.l, d_.l, d_.l, pref.p, 1, &result, &found),
          "cublasLtMatmulAlgoGetHeuristic");
    if (found == 0)
      pld::detail::throw_error("cuBLASLt has no algorithm for this GEMM (m ", p.m, " n ", p.n, " k ", p.k, " batch ", p.batch, ")");
    algo_ = result.algo;
  }

  const GemmProblem& problem() const { return problem_; }

  // D = alpha op(A) op(B) + beta D. bias: m elements (Epilogue::bias, bias_gelu_aux); aux: the
  // GELU input, written by bias_gelu_aux and read by dgelu.
  void run(const LtHandle& handle, float alpha, const void* A, const void* B, float beta, void* D, const void* bias,
           const void* aux, void* workspace, cudaStream_t stream) {
    const void* ptrs[3] = {A, B, D};
    for (int i = 0; i < 3; ++i)
      if (reinterpret_cast<std::uintptr_t>(ptrs[i]) % align_[i] != 0)
        pld::detail::throw_error("GEMM: operand ", "ABD"[i], " is not ", align_[i], "-byte aligned as its plan assumes");
    if (problem_.epilogue == Epilogue::bias || problem_.epilogue == Epilogue::bias_gelu_aux) {
      if (!bias) pld::detail::throw_error("GEMM: this epilogue needs a bias pointer");
      desc_.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    }
    if (problem_.epilogue == Epilogue::bias_gelu_aux || problem_.epilogue == Epilogue::dgelu) {
      if (!aux) pld::detail::throw_error("GEMM: this epilogue needs an auxiliary pointer");
      desc_.set(CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, aux);
    }
    check(cublasLtMatmul(handle.get(), desc_.d, &alpha, A, a_.l, B, b_.l, &beta, D, d_.l, D, d_.l, &algo_, workspace,
                         workspace_bytes_, stream),
          "cublasLtMatmul");
  }

 private:
  GemmProblem problem_;
  detail::MatmulDesc desc_;
  detail::Layout a_, b_, d_;
  std::size_t workspace_bytes_;
  std::uint32_t align_[3] = {256, 256, 256};  // A, B, D
  cublasLtMatmulAlgo_t algo_{};
};

// A row-major product as cuBLASLt's column-major problem: row-major D = op(X) op(Y) is
// column-major D^T = op(Y)^T op(X)^T, so Y is cuBLASLt's A and X its B, with m and n swapped.
inline GemmProblem lt_problem(const MatMul& mm, cudaDataType_t storage, cublasComputeType_t compute = CUBLAS_COMPUTE_32F) {
  if (mm.batch2 != 1)
    pld::detail::throw_error("cuBLASLt: a product over two batch dimensions (heads read in place) is not supported; the CUDA "
                             "backends split the heads");
  GemmProblem p;
  p.trans_a = mm.trans_y;
  p.trans_b = mm.trans_x;
  p.m = mm.n; p.n = mm.m; p.k = mm.k;
  p.lda = mm.ldy; p.ldb = mm.ldx; p.ldd = mm.ldd;
  p.batch = mm.batch;
  p.stride_a = mm.stride_y; p.stride_b = mm.stride_x; p.stride_d = mm.stride_d;
  p.ab_type = storage;
  p.d_type = mm.accum_out ? CUDA_R_32F : storage;
  p.compute = compute;
  p.epilogue = mm.epilogue;
  p.aux_ld = mm.aux_ld;
  p.align_bytes = mm.align_bytes;
  return p;
}

// The plan of one MatMul in storage T, operands in the MatMul's row-major order: what the layer's
// logic (BasicPreLnLayer) and the BERT model run. Lt is the plan of the translated problem:
// GemmPlan on a device, the tests' host emulation of cuBLASLt elsewhere.
template <class T, class Lt = GemmPlan, class Handle = LtHandle>
class ProductPlan {
 public:
  ProductPlan(const Handle& handle, const MatMul& mm) : matmul_((mm.check(), mm)), lt_(handle, lt_problem(mm, Storage<T>::data_type)) {}
  const MatMul& matmul() const { return matmul_; }
  const GemmProblem& problem() const { return lt_.problem(); }
  // D = alpha op(X) op(Y) + beta D, then the epilogue (bias: n values; aux: the GELU input).
  void run(const Handle& handle, float alpha, const void* X, const void* Y, float beta, void* D, const void* bias, const void* aux,
           void* workspace, cudaStream_t stream) {
    lt_.run(handle, alpha, Y, X, beta, D, bias, aux, workspace, stream);
  }

 private:
  MatMul matmul_;
  Lt lt_;
};

// The layer's products as cuBLASLt problems directly (benchmarks, the tests of the translation).
// y (N, out) = x (N, in) W^T: run(W, x).
inline GemmProblem row_major_linear(int rows, int in, int out, cudaDataType_t type, cublasComputeType_t compute) {
  return lt_problem(linear_product(rows, in, out), type, compute);
}
// dx (N, in) = dy (N, out) W: run(W, dy).
inline GemmProblem row_major_linear_dgrad(int rows, int in, int out, cudaDataType_t type, cublasComputeType_t compute) {
  return lt_problem(linear_dgrad_product(rows, in, out), type, compute);
}
// dW (out, in) += dy^T x, accumulated in fp32: run(x, dy).
inline GemmProblem row_major_linear_wgrad(int rows, int in, int out, cudaDataType_t type, cublasComputeType_t compute) {
  return lt_problem(linear_wgrad_product(rows, in, out), type, compute);
}
// Batched row-major (T x d) head matrices, `batch` of them, each T*d apart.
// A (T x d) times B^T: (T x T) row-major, e.g. scores = Q K^T: run(B, A).
inline GemmProblem heads_a_bt(int batch, int seq, int dim, cudaDataType_t type, cudaDataType_t out_type,
                              cublasComputeType_t compute) {
  GemmProblem p = lt_problem(heads_abt_product(batch, seq, dim, false), type, compute);
  p.d_type = out_type;
  return p;
}
// P (T x T) times V (T x d): (T x d), e.g. ctx = P V: run(V, P).
inline GemmProblem heads_p_v(int batch, int seq, int dim, cudaDataType_t type, cublasComputeType_t compute) {
  return lt_problem(heads_pv_product(batch, seq, dim), type, compute);
}
// P^T (T x T) times G (T x d): (T x d), e.g. dV = P^T dC: run(G, P).
inline GemmProblem heads_pt_v(int batch, int seq, int dim, cudaDataType_t type, cublasComputeType_t compute) {
  return lt_problem(heads_ptv_product(batch, seq, dim), type, compute);
}

}  // namespace pld::cuda
