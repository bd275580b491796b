// A host emulation of what the CUDA layer's kernels and cuBLASLt products compute, as plain
// loops on host memory, for BasicPreLnLayer<T, HostBackend<T>>. It lets CI check the layer's logic
// (buffer layout, GEMM problems and operand order, dropout keys and offsets, per-sample gathers,
// rounding points) against the CPU layer without a GPU. It is a specification of each kernel,
// written from the kernels' contracts, not from their code; the GPU tests check the kernels
// themselves. Storage rounding happens where the kernels round: every store of a T.
#pragma once

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "pld/cpu/layer_params.hpp"
#include "../layer/layer_case.hpp"
#include "pld/cuda/basic_pre_ln_layer.hpp"
#include "pld/cuda/blas_lt.hpp"
#include "pld/cuda/dropout.hpp"
#include "pld/cuda/elementwise_math.hpp"
#include "pld/cuda/launch.hpp"
#include "pld/cuda/layer_params.hpp"
#include "pld/cuda/storage.hpp"
#include "pld/cuda/workspace.hpp"

namespace pld::test {

namespace pc = pld::cuda;

// DeviceLayerParams' interface over host memory.
template <class U>
class HostLayerParams {
 public:
  explicit HostLayerParams(const LayerConfig& c) : shapes_(layer_tensor_shapes(c)) {
    for (int i = 0; i < pc::kNumParams; ++i) data_[static_cast<std::size_t>(i)].assign(shapes_[static_cast<std::size_t>(i)].size(), U{});
  }
  std::vector<TensorRef> tensors() {
    std::vector<TensorRef> out;
    for (int i = 0; i < pc::kNumParams; ++i) {
      const TensorShape& t = shapes_[static_cast<std::size_t>(i)];
      out.push_back(TensorRef{t.name, t.shape, data_[static_cast<std::size_t>(i)].data(), t.size()});
    }
    return out;
  }
  U* get(pc::ParamId id) { return data_[static_cast<std::size_t>(id)].data(); }
  const U* get(pc::ParamId id) const { return data_[static_cast<std::size_t>(id)].data(); }
  std::size_t size(pc::ParamId id) const { return data_[static_cast<std::size_t>(id)].size(); }
  void zero(cudaStream_t) {
    for (auto& v : data_) std::fill(v.begin(), v.end(), pc::from_float<U>(0.0f));
  }
  template <class S>
  void upload(pld::cpu::LayerParams<S>& host, cudaStream_t) {
    auto refs = host.tensors();
    for (int i = 0; i < pc::kNumParams; ++i)
      for (std::size_t k = 0; k < refs[static_cast<std::size_t>(i)].size; ++k)
        data_[static_cast<std::size_t>(i)][k] = pc::from_float<U>(static_cast<float>(static_cast<const S*>(refs[static_cast<std::size_t>(i)].data)[k]));
  }
  template <class S>
  void download(pld::cpu::LayerParams<S>& host, cudaStream_t) const {
    auto refs = host.tensors();
    for (int i = 0; i < pc::kNumParams; ++i)
      for (std::size_t k = 0; k < refs[static_cast<std::size_t>(i)].size; ++k)
        static_cast<S*>(refs[static_cast<std::size_t>(i)].data)[k] = static_cast<S>(pc::to_float(data_[static_cast<std::size_t>(i)][k]));
  }

 private:
  std::array<TensorShape, pc::kNumParams> shapes_;
  std::array<std::vector<U>, pc::kNumParams> data_;
};

struct HostHandle {};

// Host memory aligned like cudaMalloc's (256 bytes), filled with `fill`: the emulation's workspace.
class AlignedBytes {
 public:
  explicit AlignedBytes(std::size_t bytes, unsigned char fill = 0) : v_(bytes + 256, fill) {
    const auto addr = reinterpret_cast<std::uintptr_t>(v_.data());
    p_ = v_.data() + (256 - addr % 256) % 256;
  }
  unsigned char* data() { return p_; }
  std::size_t size() const { return v_.size() - 256; }

 private:
  std::vector<unsigned char> v_;
  unsigned char* p_;
};

// Stands in for DeviceBuffer (a stack's arena): 256-byte aligned host memory, poisoned (all bits
// set: NaN in every storage type) at each allocation, contents not kept across a resize.
class HostBuffer {
 public:
  void resize(std::size_t bytes) {
    if (bytes == bytes_) return;
    mem_ = bytes ? std::make_unique<AlignedBytes>(bytes, 0xFF) : nullptr;
    bytes_ = bytes;
  }
  void* data() const { return mem_ ? mem_->data() : nullptr; }
  std::size_t bytes() const { return bytes_; }

 private:
  std::unique_ptr<AlignedBytes> mem_;
  std::size_t bytes_ = 0;
};

// cublasLtMatmul's column-major semantics (element (r, c) of a matrix with leading dimension ld at
// r + c * ld; op T transposes; matrix i of a batch starts i * stride later; D = alpha op(A) op(B) +
// beta D) with double accumulation and the epilogues the layer uses; cuBLASLt's GELU is the tanh
// form. Also takes CUDA_R_64F operands, so the GEMM-builder tests check it to 1e-12.
class HostPlan {
 public:
  HostPlan(const HostHandle&, const pc::GemmProblem& p) : p_((p.check(), p)) {}
  const pc::GemmProblem& problem() const { return p_; }
  void run(const HostHandle&, float alpha, const void* A, const void* B, float beta, void* D, const void* bias, const void* aux,
           void*, cudaStream_t) {
    const pc::GemmProblem& p = p_;
    for (int i = 0; i < p.batch; ++i)
      for (int r = 0; r < p.m; ++r)
        for (int c = 0; c < p.n; ++c) {
          double s = 0.0;
          for (int k = 0; k < p.k; ++k) {
            const std::int64_t ia = i * p.stride_a + (p.trans_a ? k + r * p.lda : r + k * p.lda);
            const std::int64_t ib = i * p.stride_b + (p.trans_b ? c + k * p.ldb : k + c * p.ldb);
            s += load(A, p.ab_type, ia) * load(B, p.ab_type, ib);
          }
          const std::int64_t id = i * p.stride_d + r + c * p.ldd;
          double v = static_cast<double>(alpha) * s;
          if (beta != 0.0f) v += static_cast<double>(beta) * load(D, p.d_type, id);
          if (p.epilogue == pc::Epilogue::bias || p.epilogue == pc::Epilogue::bias_gelu_aux) v += load(bias, p.d_type, r);
          if (p.epilogue == pc::Epilogue::bias_gelu_aux) {
            store(const_cast<void*>(aux), p.d_type, r + c * p.aux_ld, v);
            v = pc::gelu_value(static_cast<float>(v), GeluForm::tanh);
          } else if (p.epilogue == pc::Epilogue::dgelu) {
            v *= pc::gelu_grad(static_cast<float>(load(aux, p.d_type, r + c * p.aux_ld)), GeluForm::tanh);
          }
          store(D, p.d_type, id, v);
        }
  }

 private:
  static double load(const void* p, cudaDataType_t t, std::int64_t i) {
    switch (t) {
      case CUDA_R_16BF: return pc::to_float(static_cast<const pc::bf16*>(p)[i]);
      case CUDA_R_16F: return pc::to_float(static_cast<const pc::fp16*>(p)[i]);
      case CUDA_R_64F: return static_cast<const double*>(p)[i];
      default: return static_cast<const float*>(p)[i];
    }
  }
  static void store(void* p, cudaDataType_t t, std::int64_t i, double v) {
    switch (t) {
      case CUDA_R_16BF: static_cast<pc::bf16*>(p)[i] = pc::from_float<pc::bf16>(static_cast<float>(v)); break;
      case CUDA_R_16F: static_cast<pc::fp16*>(p)[i] = pc::from_float<pc::fp16>(static_cast<float>(v)); break;
      case CUDA_R_64F: static_cast<double*>(p)[i] = v; break;
      default: static_cast<float*>(p)[i] = static_cast<float>(v);
    }
  }
  pc::GemmProblem p_;
};

// Stands in for page-locked staging memory: every block it hands out is registered, so the host
// backend's copy_from_host can refuse a source that a device run would read from pageable memory.
class HostStaging {
 public:
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging() { unregister(); }
  int* reserve(std::size_t n) {
    if (n > v_.size()) {
      unregister();
      v_.resize(n);
      regions().push_back({reinterpret_cast<const char*>(v_.data()), v_.size() * sizeof(int)});
    }
    return v_.data();
  }
  void copied(cudaStream_t) {}
  // Whether [p, p + bytes) lies in memory some staging object handed out.
  static bool holds(const void* p, std::size_t bytes) {
    const auto* c = static_cast<const char*>(p);
    for (const auto& r : regions())
      if (c >= r.first && c + bytes <= r.first + r.second) return true;
    return false;
  }

 private:
  static std::vector<std::pair<const char*, std::size_t>>& regions() {
    static std::vector<std::pair<const char*, std::size_t>> r;
    return r;
  }
  void unregister() {
    auto& r = regions();
    const auto* base = reinterpret_cast<const char*>(v_.data());
    r.erase(std::remove_if(r.begin(), r.end(), [&](const auto& e) { return e.first == base; }), r.end());
  }
  std::vector<int> v_;
};

// The memory half of a host backend: parameters, products and copies on host memory.
// An event on the host's clock: what the emulated stream did between two records took that long.
class HostEvent {
 public:
  void record(cudaStream_t) { t_ = std::chrono::steady_clock::now(); }
  void synchronize() {}
  float elapsed_ms_since(const HostEvent& start) const { return std::chrono::duration<float, std::milli>(t_ - start.t_).count(); }

 private:
  std::chrono::steady_clock::time_point t_{};
};

struct HostMemory {
  template <class U>
  using Params = HostLayerParams<U>;
  using Handle = HostHandle;
  template <class U>
  using Plan = pc::ProductPlan<U, HostPlan, HostHandle>;  // through the cuBLASLt translation
  using RowStaging = HostStaging;
  using Buffer = HostBuffer;
  using Event = HostEvent;
  static void copy(void* dst, const void* src, std::size_t bytes, cudaStream_t) { std::memmove(dst, src, bytes); }
  // Host-to-device copies must read staging memory (page-locked on a device): checked here.
  static void copy_from_host(void* dst, const void* src, std::size_t bytes, cudaStream_t) {
    if (!HostStaging::holds(src, bytes))
      pld::detail::throw_error("copy_from_host: source is not staging memory (a device copy from pageable memory may block the host)");
    std::memcpy(dst, src, bytes);
  }
  static void upload(void* dst, const void* src, std::size_t bytes, cudaStream_t) { std::memcpy(dst, src, bytes); }
  static void download(void* dst, const void* src, std::size_t bytes, cudaStream_t) { std::memcpy(dst, src, bytes); }
  static void zero(void* dst, std::size_t bytes, cudaStream_t) { std::memset(dst, 0, bytes); }
};

// Every kernel as plain loops, on host memory.
template <class T>
struct HostBackend : HostMemory, pc::LayerTraits {
  using LC = pc::LaunchCounts;

  static float f(T v) { return pc::to_float(v); }
  static T st(float v) { return pc::from_float<T>(v); }

  template <class E>
  static void gather(const E* src, const int* index, int rows, std::int64_t n, E* dst) {
    for (int k = 0; k < rows; ++k) std::memcpy(dst + k * n, src + index[k] * n, static_cast<std::size_t>(n) * sizeof(E));
  }
  static void gather_rows(const T* src, const int* index, int rows, std::int64_t n, T* dst, cudaStream_t, LC& c) {
    gather(src, index, rows, n, dst);
    ++c.kernels;
  }
  static void gather_valid(const std::uint8_t* src, const int* index, int rows, std::int64_t n, std::uint8_t* dst, cudaStream_t, LC& c) {
    gather(src, index, rows, n, dst);
    ++c.kernels;
  }
  static void scatter_rows(const T* src, const int* index, int rows, std::int64_t n, T* dst, cudaStream_t, LC& c) {
    for (int k = 0; k < rows; ++k) std::memcpy(dst + index[k] * n, src + k * n, static_cast<std::size_t>(n) * sizeof(T));
    ++c.kernels;
  }

  static void moments(const T* x, int cols, float eps, float& mean, float& rstd) {
    float s = 0.0f;
    for (int k = 0; k < cols; ++k) s += f(x[k]);
    mean = s / static_cast<float>(cols);
    float v = 0.0f;
    for (int k = 0; k < cols; ++k) v += (f(x[k]) - mean) * (f(x[k]) - mean);
    rstd = 1.0f / std::sqrt(v / static_cast<float>(cols) + eps);
  }
  static void layer_norm_forward(const T* x, const T* g, const T* b, T* y, float* mean, float* rstd, int rows, int cols, double eps,
                                 cudaStream_t, LC& c) {
    for (int r = 0; r < rows; ++r) {
      const std::int64_t o = static_cast<std::int64_t>(r) * cols;
      moments(x + o, cols, static_cast<float>(eps), mean[r], rstd[r]);
      for (int k = 0; k < cols; ++k) y[o + k] = st((f(x[o + k]) - mean[r]) * rstd[r] * f(g[k]) + f(b[k]));
    }
    ++c.kernels;
  }
  static void layer_norm_backward(const T* dy, const T* x, const float* mean, const float* rstd, const T* gamma, const T* res, T* dx,
                                  float* dgamma, float* dbeta, int rows, int cols, float*, cudaStream_t, LC& c) {
    std::vector<float> dg(static_cast<std::size_t>(cols), 0.0f), db(static_cast<std::size_t>(cols), 0.0f);
    for (int r = 0; r < rows; ++r) {
      const std::int64_t o = static_cast<std::int64_t>(r) * cols;
      float sg = 0.0f, sgx = 0.0f;
      for (int k = 0; k < cols; ++k) {
        const float xh = (f(x[o + k]) - mean[r]) * rstd[r];
        sg += f(dy[o + k]) * f(gamma[k]);
        sgx += f(dy[o + k]) * f(gamma[k]) * xh;
        dg[static_cast<std::size_t>(k)] += f(dy[o + k]) * xh;
        db[static_cast<std::size_t>(k)] += f(dy[o + k]);
      }
      sg /= static_cast<float>(cols);
      sgx /= static_cast<float>(cols);
      for (int k = 0; k < cols; ++k) {
        const float xh = (f(x[o + k]) - mean[r]) * rstd[r];
        dx[o + k] = st(rstd[r] * (f(dy[o + k]) * f(gamma[k]) - sg - xh * sgx) + (res ? f(res[o + k]) : 0.0f));
      }
    }
    for (int k = 0; k < cols; ++k) {
      dgamma[k] += dg[static_cast<std::size_t>(k)];
      dbeta[k] += db[static_cast<std::size_t>(k)];
    }
    c.kernels += 3;  // one row kernel and the two-launch pair of column sums on the device
  }
  static void residual_layer_norm(const T* x, const T* t, T* h, const T* g, const T* b, T* y, float* mean, float* rstd, int rows,
                                  int cols, float gate, const pc::DropoutMask& m, double eps, cudaStream_t s, LC& c) {
    for (std::int64_t e = 0; e < static_cast<std::int64_t>(rows) * cols; ++e)
      h[e] = st(f(x[e]) + gate * m.apply(f(t[e]), static_cast<std::uint64_t>(e)));
    LC ignore;
    layer_norm_forward(h, g, b, y, mean, rstd, rows, cols, eps, s, ignore);
    ++c.kernels;
  }
  static void residual_dropout(const T* x, const T* t, T* out, std::int64_t n, float gate, const pc::DropoutMask& m, cudaStream_t,
                               LC& c) {
    for (std::int64_t e = 0; e < n; ++e) out[e] = st((x ? f(x[e]) : 0.0f) + gate * m.apply(f(t[e]), static_cast<std::uint64_t>(e)));
    ++c.kernels;
  }
  static void gelu_forward(const T* pre, T* act, std::int64_t n, GeluForm form, cudaStream_t, LC& c) {
    for (std::int64_t i = 0; i < n; ++i) act[i] = st(pc::gelu_value(f(pre[i]), form));
    ++c.kernels;
  }
  static void gelu_backward(const T* dact, const T* pre, T* dpre, std::int64_t n, GeluForm form, cudaStream_t, LC& c) {
    for (std::int64_t i = 0; i < n; ++i) dpre[i] = st(f(dact[i]) * pc::gelu_grad(f(pre[i]), form));
    ++c.kernels;
  }
  static void split_heads(const T* packed, T* heads, const pc::HeadShape& s, cudaStream_t, LC& c) {
    for (std::int64_t i = 0; i < s.elements(); ++i) heads[i] = packed[pc::packed_offset(s, i)];
    ++c.kernels;
  }
  static void merge_heads(const T* heads, T* packed, const pc::HeadShape& s, cudaStream_t, LC& c) {
    for (std::int64_t i = 0; i < s.elements(); ++i) packed[pc::packed_offset(s, i)] = heads[i];
    ++c.kernels;
  }
  static void softmax_forward(const float* scores, const std::uint8_t* valid, T* probs, T* dropped, int batch, int heads, int seq,
                              const pc::DropoutMask& m, cudaStream_t, LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::int64_t b = row / seq / heads, o = row * seq;
      float mx = -INFINITY;
      for (int j = 0; j < seq; ++j)
        if (!valid || valid[b * seq + j]) mx = std::max(mx, scores[o + j]);
      std::vector<float> e(static_cast<std::size_t>(seq), 0.0f);
      float sum = 0.0f;
      for (int j = 0; j < seq; ++j)
        if (!valid || valid[b * seq + j]) sum += (e[static_cast<std::size_t>(j)] = std::exp(scores[o + j] - mx));
      for (int j = 0; j < seq; ++j) {
        const T p = st(sum > 0.0f ? e[static_cast<std::size_t>(j)] / sum : 0.0f);
        probs[o + j] = p;
        if (dropped) dropped[o + j] = st(m.apply(f(p), static_cast<std::uint64_t>(o + j)));
      }
    }
    ++c.kernels;
  }
  // The dropped probabilities are not read: the mask is drawn, as on the GPU.
  static void softmax_backward(const float* dpd, const T* probs, const T* /*dropped*/, T* ds, int batch, int heads, int seq,
                               float scale, const pc::DropoutMask& m, cudaStream_t, LC& c) {
    const std::int64_t rows = static_cast<std::int64_t>(batch) * heads * seq;
    for (std::int64_t row = 0; row < rows; ++row) {
      const std::int64_t o = row * seq;
      float dot = 0.0f;
      for (int j = 0; j < seq; ++j) dot += m.apply(dpd[o + j], static_cast<std::uint64_t>(o + j)) * f(probs[o + j]);
      for (int j = 0; j < seq; ++j)
        ds[o + j] = st(f(probs[o + j]) * (m.apply(dpd[o + j], static_cast<std::uint64_t>(o + j)) - dot) * scale);
    }
    ++c.kernels;
  }
  static void dropout_probs(const T* probs, T* dropped, std::int64_t n, const pc::DropoutMask& m, cudaStream_t, LC& c) {
    for (std::int64_t e = 0; e < n; ++e) dropped[e] = st(m.apply(f(probs[e]), static_cast<std::uint64_t>(e)));
    ++c.kernels;
  }
  static void column_sums(const T* a, int rows, int cols, float* out, float*, cudaStream_t, LC& c) {
    for (int k = 0; k < cols; ++k) {
      float s = 0.0f;
      for (int r = 0; r < rows; ++r) s += f(a[static_cast<std::int64_t>(r) * cols + k]);
      out[k] += s;
    }
    c.kernels += 2;
  }
};

// One forward and backward of BasicPreLnLayer<T, Backend> on host memory (a host Backend: the
// plain-loop emulation, or the real kernels on the SIMT emulator), outputs and workspace
// poisoned (NaN in every storage type) first.
template <class T, class Backend>
LayerOutputs run_host_layer(const LayerCase& k, const LayerInputs& in) {
  const LayerConfig& c = k.config;
  pc::BasicPreLnLayer<T, Backend> layer(c);
  pld::cpu::LayerParams<double> params = in.params;
  layer.params().upload(params, nullptr);
  layer.grads().zero(nullptr);
  std::vector<T> xs = to_storage<T>(in.x), dys = to_storage<T>(in.dy);
  std::vector<T> ys(xs.size(), pc::from_float<T>(NAN)), dxs(xs.size(), pc::from_float<T>(NAN));
  const auto sizes = layer.workspace_sizes(k.batch, k.seq, in.step);
  AlignedBytes saved(sizes.saved, 0xFF), scratch(sizes.scratch, 0xFF);
  const pc::Workspace ws{saved.data(), sizes.saved, scratch.data(), sizes.scratch};
  layer.forward(xs.data(), ys.data(), k.batch, k.seq, in.valid.empty() ? nullptr : in.valid.data(), in.step, ws, nullptr);
  layer.backward(dys.data(), dxs.data(), ws, nullptr);
  LayerOutputs out(c);
  out.y = from_storage(ys);
  out.dx = from_storage(dxs);
  layer.grads().download(out.grads, nullptr);
  return out;
}

}  // namespace pld::test
