// pld::cuda::PreLnLayer<T>: the Pre-LN layer of pld/layer/basic_pre_ln_layer.hpp run by
// DeviceBackend, cuBLASLt for the products and pld's kernels for the rest, on the caller's stream.
#pragma once

#include <cstddef>
#include <cstdint>

#include <cuda_runtime.h>

#include "pld/cuda/attention.cuh"
#include "pld/cuda/basic_pre_ln_layer.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/error.hpp"
#include "pld/cuda/gelu.cuh"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/layer_norm.cuh"
#include "pld/cuda/layer_params.hpp"
#include "pld/cuda/reduce.cuh"
#include "pld/cuda/residual.cuh"
#include "pld/cuda/rows.cuh"
#include "pld/cuda/workspace.hpp"

namespace pld::cuda {

// The kernel half of a backend: one forwarding function per launcher. DeviceBackend adds device
// memory and cuBLASLt; the tests' SIMT emulator pairs the same kernels with host memory.
template <class T>
struct KernelBackend : LayerTraits {
  static void gather_rows(const T* src, const int* index, int rows, std::int64_t row_elems, T* dst, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::gather_rows<T>(src, index, rows, row_elems, dst, st, c);
  }
  static void gather_valid(const std::uint8_t* src, const int* index, int rows, std::int64_t row_elems, std::uint8_t* dst,
                           cudaStream_t st, LaunchCounts& c) {
    pld::cuda::gather_rows<std::uint8_t>(src, index, rows, row_elems, dst, st, c);
  }
  static void scatter_rows(const T* src, const int* index, int rows, std::int64_t row_elems, T* dst, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::scatter_rows<T>(src, index, rows, row_elems, dst, st, c);
  }
  static void layer_norm_forward(const T* x, const T* gamma, const T* beta, T* y, float* mean, float* rstd, int rows, int cols,
                                 double eps, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::layer_norm_forward<T>(x, gamma, beta, y, mean, rstd, rows, cols, eps, st, c);
  }
  static void layer_norm_backward(const T* dy, const T* x, const float* mean, const float* rstd, const T* gamma, const T* residual,
                                  T* dx, float* dgamma, float* dbeta, int rows, int cols, float* scratch, cudaStream_t st,
                                  LaunchCounts& c) {
    pld::cuda::layer_norm_backward<T>(dy, x, mean, rstd, gamma, residual, dx, dgamma, dbeta, rows, cols, scratch, st, c);
  }
  static void residual_layer_norm(const T* x, const T* t, T* h, const T* gamma, const T* beta, T* y, float* mean, float* rstd,
                                  int rows, int cols, float g, const DropoutMask& mask, double eps, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::residual_layer_norm<T>(x, t, h, gamma, beta, y, mean, rstd, rows, cols, g, mask, eps, st, c);
  }
  static void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, float g, const DropoutMask& mask, cudaStream_t st,
                               LaunchCounts& c) {
    pld::cuda::residual_dropout<T>(x, t, out, n, g, mask, st, c);
  }
  static void gelu_forward(const T* pre, T* act, std::int64_t n, GeluForm form, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::gelu_forward<T>(pre, act, n, form, st, c);
  }
  static void gelu_backward(const T* dact, const T* pre, T* dpre, std::int64_t n, GeluForm form, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::gelu_backward<T>(dact, pre, dpre, n, form, st, c);
  }
  static void split_heads(const T* packed, T* heads, const HeadShape& s, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::split_heads<T>(packed, heads, s, st, c);
  }
  static void merge_heads(const T* heads, T* packed, const HeadShape& s, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::merge_heads<T>(heads, packed, s, st, c);
  }
  static void softmax_forward(const float* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                              const DropoutMask& mask, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::softmax_forward<T>(scores, valid, probs, dropped, batch, heads, seq, mask, st, c);
  }
  // `dropped` (the dropped probabilities) is not read: the kernel draws the mask again, cheaper
  // on a GPU than reading a (B, heads, T, T) tensor.
  static void softmax_backward(const float* dropped_grad, const T* probs, const T* /*dropped*/, T* dscores, int batch, int heads, int seq,
                               float score_scale, const DropoutMask& mask, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::softmax_backward<T>(dropped_grad, probs, dscores, batch, heads, seq, score_scale, mask, st, c);
  }
  static void dropout_probs(const T* probs, T* dropped, std::int64_t n, const DropoutMask& mask, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::dropout_probs<T>(probs, dropped, n, mask, st, c);
  }
  static void column_sums(const T* a, int rows, int cols, float* out, float* scratch, cudaStream_t st, LaunchCounts& c) {
    pld::cuda::column_sums<T>(a, nullptr, nullptr, nullptr, rows, cols, out, scratch, st, c);
  }
};

// What BasicPreLnLayer needs, on a CUDA device.
template <class T>
struct DeviceBackend : KernelBackend<T> {
  template <class U>
  using Params = DeviceLayerParams<U>;
  using Handle = LtHandle;
  template <class U>
  using Plan = ProductPlan<U>;
  using RowStaging = PinnedStaging<int>;  // per-sample row indices: page-locked, copied asynchronously
  using Buffer = DeviceBuffer;            // a stack's workspace arena
  using Event = pld::cuda::Event;         // timing on the stream (a model's layer time)

  static void copy(void* dst, const void* src, std::size_t bytes, cudaStream_t st) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st), "cudaMemcpyAsync (device to device)");
  }
  static void copy_from_host(void* dst, const void* src, std::size_t bytes, cudaStream_t st) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (host to device)");
  }
  // Synchronous copies from and to any host memory (a model's initial values, its loss).
  static void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t st) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "cudaMemcpyAsync (host to device)");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  }
  static void download(void* dst, const void* src, std::size_t bytes, cudaStream_t st) {
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st), "cudaMemcpyAsync (device to host)");
    check(cudaStreamSynchronize(st), "cudaStreamSynchronize");
  }
  static void zero(void* dst, std::size_t bytes, cudaStream_t st) { check(cudaMemsetAsync(dst, 0, bytes, st), "cudaMemsetAsync"); }
};

template <class T>
using PreLnLayer = BasicPreLnLayer<T, DeviceBackend<T>>;

}  // namespace pld::cuda
