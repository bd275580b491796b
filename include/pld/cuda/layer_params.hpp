// Parameters (and, with the same class, fp32 gradients) of one Pre-LN layer on the device: the
// twelve tensors of pld::cpu::LayerParams, same names, shapes and order, in one allocation with
// every tensor 256-byte aligned (cuBLASLt's bias and operand pointers). Upload and download
// convert from and to any host LayerParams<S>.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "pld/cpu/layer_params.hpp"
#include "pld/cuda/memory.hpp"
#include "pld/cuda/storage.hpp"
#include "pld/layer/layer_config.hpp"

namespace pld::cuda {

using pld::ParamId;
constexpr int kNumParams = kLayerTensors;  // in the order of pld::layer_tensor_shapes

template <class T>
class DeviceLayerParams {
 public:
  // Zeroed on `stream`, and complete when the constructor returns: a plain cudaMemset runs on the
  // legacy default stream, which work on non-blocking streams (pld::cuda::Stream, most trainers')
  // is not ordered after, so an upload or a first backward could race with it.
  explicit DeviceLayerParams(const LayerConfig& c, cudaStream_t stream = nullptr) : shapes_((c.validate(), layer_tensor_shapes(c))) {
    std::size_t off = 0;
    for (int i = 0; i < kNumParams; ++i) {
      offsets_[static_cast<std::size_t>(i)] = off;
      off += (shapes_[static_cast<std::size_t>(i)].size() * sizeof(T) + 255) / 256 * 256;
    }
    buf_.resize(off);
    check(cudaMemsetAsync(buf_.data(), 0, off, stream), "cudaMemsetAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  }

  T* get(ParamId id) const { return buf_.as<T>() + offsets_[static_cast<std::size_t>(id)] / sizeof(T); }
  std::size_t size(ParamId id) const { return shapes_[static_cast<std::size_t>(id)].size(); }
  std::size_t bytes() const { return buf_.bytes(); }

  // Every tensor with its PyTorch name and shape; data are device pointers.
  std::vector<TensorRef> tensors() const {
    std::vector<TensorRef> out;
    for (int i = 0; i < kNumParams; ++i) {
      const TensorShape& t = shapes_[static_cast<std::size_t>(i)];
      out.push_back(TensorRef{t.name, t.shape, get(static_cast<ParamId>(i)), t.size()});
    }
    return out;
  }

  void zero(cudaStream_t stream) { check(cudaMemsetAsync(buf_.data(), 0, buf_.bytes(), stream), "cudaMemsetAsync"); }

  // Host parameters (any scalar type) converted to T. Synchronises the stream.
  template <class S>
  void upload(cpu::LayerParams<S>& host, cudaStream_t stream) {
    auto refs = host.tensors();
    check_match(refs);
    std::vector<T> tmp;
    for (int i = 0; i < kNumParams; ++i) {
      const auto& r = refs[static_cast<std::size_t>(i)];
      tmp.resize(r.size);
      const S* src = static_cast<const S*>(r.data);
      for (std::size_t k = 0; k < r.size; ++k) tmp[k] = from_float<T>(static_cast<float>(src[k]));
      copy_to_device(get(static_cast<ParamId>(i)), tmp.data(), r.size, stream);
      check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");  // tmp is reused
    }
  }

  // Device tensors converted into host parameters of any scalar type. Synchronises the stream.
  template <class S>
  void download(cpu::LayerParams<S>& host, cudaStream_t stream) const {
    auto refs = host.tensors();
    check_match(refs);
    for (int i = 0; i < kNumParams; ++i) {
      const auto& r = refs[static_cast<std::size_t>(i)];
      const std::vector<T> tmp = to_host(get(static_cast<ParamId>(i)), r.size, stream);
      S* dst = static_cast<S*>(r.data);
      for (std::size_t k = 0; k < r.size; ++k) dst[k] = static_cast<S>(to_float(tmp[k]));
    }
  }

 private:
  void check_match(const std::vector<TensorRef>& refs) const {
    for (int i = 0; i < kNumParams; ++i)
      if (refs[static_cast<std::size_t>(i)].size != size(static_cast<ParamId>(i)))
        pld::detail::throw_error("DeviceLayerParams: host tensor ", refs[static_cast<std::size_t>(i)].name, " has ",
                                 refs[static_cast<std::size_t>(i)].size, " elements, the layer needs ",
                                 size(static_cast<ParamId>(i)));
  }

  std::array<TensorShape, kNumParams> shapes_;
  std::array<std::size_t, kNumParams> offsets_{};
  DeviceBuffer buf_;
};

}  // namespace pld::cuda
