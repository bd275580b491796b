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

enum class ParamId : int {
  in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, linear1_weight, linear1_bias,
  linear2_weight, linear2_bias, norm1_weight, norm1_bias, norm2_weight, norm2_bias
};
constexpr int kNumParams = 12;

template <class T>
class DeviceLayerParams {
 public:
  explicit DeviceLayerParams(const LayerConfig& c) {
    c.validate();
    const auto H = static_cast<std::size_t>(c.hidden), F = static_cast<std::size_t>(c.ffn_size());
    sizes_ = {3 * H * H, 3 * H, H * H, H, F * H, F, H * F, H, H, H, H, H};
    std::size_t off = 0;
    for (int i = 0; i < kNumParams; ++i) {
      offsets_[static_cast<std::size_t>(i)] = off;
      off += (sizes_[static_cast<std::size_t>(i)] * sizeof(T) + 255) / 256 * 256;
    }
    buf_.resize(off);
    check(cudaMemset(buf_.data(), 0, off), "cudaMemset");
    hidden_ = c.hidden;
    ffn_ = c.ffn_size();
  }

  T* get(ParamId id) const { return buf_.as<T>() + offsets_[static_cast<std::size_t>(id)] / sizeof(T); }
  std::size_t size(ParamId id) const { return sizes_[static_cast<std::size_t>(id)]; }
  std::size_t bytes() const { return buf_.bytes(); }

  // Every tensor with its PyTorch name and shape; data are device pointers.
  std::vector<cpu::TensorRef> tensors() const {
    const int H = hidden_, F = ffn_;
    const std::array<std::vector<int>, kNumParams> shapes = {
        std::vector<int>{3 * H, H}, {3 * H}, {H, H}, {H}, {F, H}, {F}, {H, F}, {H}, {H}, {H}, {H}, {H}};
    static const char* names[kNumParams] = {
        "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
        "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
        "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"};
    std::vector<cpu::TensorRef> out;
    for (int i = 0; i < kNumParams; ++i)
      out.push_back(cpu::TensorRef{names[i], shapes[static_cast<std::size_t>(i)], get(static_cast<ParamId>(i)),
                                   sizes_[static_cast<std::size_t>(i)]});
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
  void check_match(const std::vector<cpu::TensorRef>& refs) const {
    for (int i = 0; i < kNumParams; ++i)
      if (refs[static_cast<std::size_t>(i)].size != sizes_[static_cast<std::size_t>(i)])
        pld::detail::throw_error("DeviceLayerParams: host tensor ", refs[static_cast<std::size_t>(i)].name, " has ",
                                 refs[static_cast<std::size_t>(i)].size, " elements, the layer needs ",
                                 sizes_[static_cast<std::size_t>(i)]);
  }

  DeviceBuffer buf_;
  std::array<std::size_t, kNumParams> sizes_{}, offsets_{};
  int hidden_ = 0, ffn_ = 0;
};

}  // namespace pld::cuda
