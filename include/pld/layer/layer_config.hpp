// The shape and hyperparameters of one encoder layer, shared by every backend (pld::cpu,
// pld::cuda): hidden size, heads, FFN width, LayerNorm epsilon and position, GELU form, dropout rates.
#pragma once

#include <array>
#include <cstddef>
#include <string>
#include <vector>

#include "pld/core/error.hpp"

namespace pld {

// GELU, exact erf form x Phi(x) (BERT, PyTorch's default) or the tanh approximation
// (PyTorch's approximate='tanh', and the form cuBLASLt's GELU epilogues compute).
enum class GeluForm { erf, tanh };

// Where the LayerNorms sit. pre (Pre-LN, the PLD paper's layer and pld's default):
//   h = x + g Drop(Attn(LN1(x))),  y = h + g Drop(FFN(LN2(h)));
// post (Post-LN, BERT's original layer; PyTorch's norm_first=False):
//   h = LN1(x + g Drop(Attn(x))),  y = LN2(h + g Drop(FFN(h))).
// The CPU backend runs both; the CUDA backend runs pre and refuses post.
enum class NormPosition { pre, post };

inline const char* to_string(NormPosition n) { return n == NormPosition::pre ? "pre" : "post"; }

inline NormPosition parse_norm_position(const std::string& s) {
  if (s == "pre") return NormPosition::pre;
  if (s == "post") return NormPosition::post;
  detail::throw_error("norm position must be pre or post; got '", s, "'");
}

struct LayerConfig {
  int hidden = 256;                 // H
  int heads = 4;                    // N; H % N == 0
  int ffn = 0;                      // F; 0 means 4H
  double ln_eps = 1e-5;             // PyTorch's default; BERT uses 1e-12
  GeluForm gelu = GeluForm::erf;
  float attention_dropout = 0.1f;   // on the softmax probabilities
  float hidden_dropout = 0.1f;      // on both residual branches
  NormPosition norm = NormPosition::pre;

  int ffn_size() const { return ffn > 0 ? ffn : 4 * hidden; }
  int head_dim() const { return hidden / heads; }

  void validate() const {
    if (hidden <= 0) pld::detail::throw_error("LayerConfig.hidden must be > 0, got ", hidden);
    if (heads <= 0) pld::detail::throw_error("LayerConfig.heads must be > 0, got ", heads);
    if (hidden % heads != 0)
      pld::detail::throw_error("LayerConfig.hidden (", hidden, ") must be divisible by heads (", heads, ")");
    if (ffn < 0) pld::detail::throw_error("LayerConfig.ffn must be >= 0 (0 = 4H), got ", ffn);
    if (!(ln_eps > 0.0)) pld::detail::throw_error("LayerConfig.ln_eps must be > 0, got ", ln_eps);
    for (float r : {attention_dropout, hidden_dropout})
      if (!(r >= 0.0f && r < 1.0f)) pld::detail::throw_error("dropout rate must be in [0, 1), got ", r);
  }
};

// The twelve parameter tensors of a layer, in the fixed order every backend stores and walks them,
// with PyTorch's nn.TransformerEncoderLayer names and shapes (H hidden, F ffn).
struct TensorShape {
  const char* name;
  std::vector<int> shape;
  std::size_t size() const {
    std::size_t n = 1;
    for (int d : shape) n *= static_cast<std::size_t>(d);
    return n;
  }
};
constexpr int kLayerTensors = 12;

// The layer's tensors by position in layer_tensor_shapes (and in every backend's parameters).
enum class ParamId : int {
  in_proj_weight, in_proj_bias, out_proj_weight, out_proj_bias, linear1_weight, linear1_bias,
  linear2_weight, linear2_bias, norm1_weight, norm1_bias, norm2_weight, norm2_bias
};

// One stored tensor of a layer: name and shape from layer_tensor_shapes, and where its elements
// are (host memory for pld::cpu, device memory for pld::cuda).
struct TensorRef {
  std::string name;
  std::vector<int> shape;
  void* data;
  std::size_t size;
};

inline std::array<TensorShape, kLayerTensors> layer_tensor_shapes(int H, int F) {
  return {TensorShape{"self_attn.in_proj_weight", {3 * H, H}}, TensorShape{"self_attn.in_proj_bias", {3 * H}},
          TensorShape{"self_attn.out_proj.weight", {H, H}},    TensorShape{"self_attn.out_proj.bias", {H}},
          TensorShape{"linear1.weight", {F, H}},               TensorShape{"linear1.bias", {F}},
          TensorShape{"linear2.weight", {H, F}},               TensorShape{"linear2.bias", {H}},
          TensorShape{"norm1.weight", {H}},                    TensorShape{"norm1.bias", {H}},
          TensorShape{"norm2.weight", {H}},                    TensorShape{"norm2.bias", {H}}};
}
inline std::array<TensorShape, kLayerTensors> layer_tensor_shapes(const LayerConfig& c) {
  return layer_tensor_shapes(c.hidden, c.ffn_size());
}

// FLOPs of one forward of a layer on (batch, seq) rows, GEMMs only (2 per multiply-add): the
// four projections and the two attention products. The backward is twice this.
inline double layer_forward_flops(const LayerConfig& c, int batch, int seq) {
  const double N = static_cast<double>(batch) * seq, H = c.hidden, F = c.ffn_size(), T = seq;
  return 2.0 * N * H * (3 * H + H + 2 * F) + 2.0 * 2.0 * N * T * H;
}

}  // namespace pld
