// Parameters (and, with the same struct, gradients) of one Pre-LN encoder layer, laid out as
// PyTorch's nn.TransformerEncoderLayer names them, plus a walkable list of (name, shape, pointer).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/core/random.hpp"
#include "pld/layer/layer_config.hpp"

namespace pld::cpu {

using pld::LayerConfig;

// w ~ N(0, std_dev) from Philox by Box-Muller: element pair k uses block (seed, step,
// param_init, tensor_id, k). A pure function of its arguments, so any run can rebuild it.
template <class Scalar>
void fill_normal(std::vector<Scalar>& w, std::uint64_t seed, std::uint64_t step, std::uint32_t tensor_id, double std_dev) {
  for (std::size_t i = 0; i < w.size(); i += 2) {
    const U32x4 r = random_block(seed, step, RandomStream::param_init, tensor_id, static_cast<std::uint32_t>(i / 2));
    const double u1 = 1.0 - uniform_double(r.v[0], r.v[1]);  // (0, 1]
    const double u2 = uniform_double(r.v[2], r.v[3]);
    const double rad = std::sqrt(-2.0 * std::log(u1));
    w[i] = static_cast<Scalar>(std_dev * rad * std::cos(6.283185307179586 * u2));
    if (i + 1 < w.size()) w[i + 1] = static_cast<Scalar>(std_dev * rad * std::sin(6.283185307179586 * u2));
  }
}

using pld::TensorRef;

template <class Scalar>
struct LayerParams {
  std::vector<Scalar> in_proj_weight;   // (3H, H): rows [Wq; Wk; Wv]
  std::vector<Scalar> in_proj_bias;     // (3H)
  std::vector<Scalar> out_proj_weight;  // (H, H)
  std::vector<Scalar> out_proj_bias;    // (H)
  std::vector<Scalar> linear1_weight;   // (F, H)
  std::vector<Scalar> linear1_bias;     // (F)
  std::vector<Scalar> linear2_weight;   // (H, F)
  std::vector<Scalar> linear2_bias;     // (H)
  std::vector<Scalar> norm1_weight;     // (H)
  std::vector<Scalar> norm1_bias;       // (H)
  std::vector<Scalar> norm2_weight;     // (H)
  std::vector<Scalar> norm2_bias;       // (H)

  explicit LayerParams(const LayerConfig& c = {}) {
    const auto H = static_cast<std::size_t>(c.hidden), F = static_cast<std::size_t>(c.ffn_size());
    in_proj_weight.assign(3 * H * H, 0);
    in_proj_bias.assign(3 * H, 0);
    out_proj_weight.assign(H * H, 0);
    out_proj_bias.assign(H, 0);
    linear1_weight.assign(F * H, 0);
    linear1_bias.assign(F, 0);
    linear2_weight.assign(H * F, 0);
    linear2_bias.assign(H, 0);
    norm1_weight.assign(H, 1);
    norm1_bias.assign(H, 0);
    norm2_weight.assign(H, 1);
    norm2_bias.assign(H, 0);
  }

  // Every tensor, in a fixed order, with its PyTorch name and shape (pld::layer_tensor_shapes).
  std::vector<TensorRef> tensors() {
    const auto shapes = layer_tensor_shapes(static_cast<int>(norm1_weight.size()), static_cast<int>(linear1_bias.size()));
    std::vector<Scalar>* v[kLayerTensors] = {&in_proj_weight, &in_proj_bias, &out_proj_weight, &out_proj_bias,
                                             &linear1_weight, &linear1_bias, &linear2_weight, &linear2_bias,
                                             &norm1_weight,   &norm1_bias,   &norm2_weight,   &norm2_bias};
    std::vector<TensorRef> out;
    for (int i = 0; i < kLayerTensors; ++i) out.push_back(TensorRef{shapes[i].name, shapes[i].shape, v[i]->data(), v[i]->size()});
    return out;
  }

  // One tensor by its position (pld::ParamId): what the layer logic of pld/layer/ reads.
  Scalar* get(ParamId id) { return member(id).data(); }
  const Scalar* get(ParamId id) const { return const_cast<LayerParams*>(this)->member(id).data(); }
  std::size_t size(ParamId id) const { return const_cast<LayerParams*>(this)->member(id).size(); }

  void zero() {
    for (auto& t : tensors()) {
      auto* p = static_cast<Scalar*>(t.data);
      for (std::size_t i = 0; i < t.size; ++i) p[i] = 0;
    }
  }

  // BERT's initialisation: weights ~ N(0, std), biases 0, LayerNorm weight 1 and bias 0. The
  // normals come from Philox (Box-Muller), so the same seed gives the same parameters anywhere.
  void init_normal(std::uint64_t seed, double std_dev = 0.02) {
    std::uint32_t tensor_id = 0;
    for (std::vector<Scalar>* w : {&in_proj_weight, &out_proj_weight, &linear1_weight, &linear2_weight})
      fill_normal(*w, seed, 0, tensor_id++, std_dev);
    for (std::vector<Scalar>* b : {&in_proj_bias, &out_proj_bias, &linear1_bias, &linear2_bias, &norm1_bias, &norm2_bias})
      for (auto& v : *b) v = 0;
    for (auto& v : norm1_weight) v = 1;
    for (auto& v : norm2_weight) v = 1;
  }

 private:
  std::vector<Scalar>& member(ParamId id) {
    switch (id) {
      case ParamId::in_proj_weight: return in_proj_weight;
      case ParamId::in_proj_bias: return in_proj_bias;
      case ParamId::out_proj_weight: return out_proj_weight;
      case ParamId::out_proj_bias: return out_proj_bias;
      case ParamId::linear1_weight: return linear1_weight;
      case ParamId::linear1_bias: return linear1_bias;
      case ParamId::linear2_weight: return linear2_weight;
      case ParamId::linear2_bias: return linear2_bias;
      case ParamId::norm1_weight: return norm1_weight;
      case ParamId::norm1_bias: return norm1_bias;
      case ParamId::norm2_weight: return norm2_weight;
      case ParamId::norm2_bias: return norm2_bias;
    }
    pld::detail::throw_error("LayerParams: no tensor ", static_cast<int>(id));
  }
};

}  // namespace pld::cpu
