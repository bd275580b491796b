// A Transformer encoder layer as a LibTorch module that takes the gate scale: LibTorch's own
// nn::TransformerEncoderLayer has neither the Pre-LN form (norm_first) nor a way to scale the
// residual branches. Same algorithm, parameter names and shapes as pld::cpu::PreLnLayer and
// PyTorch's nn.TransformerEncoderLayer, so weights move between them by name:
//   pre:  h = x + g Drop(Attn(LN1(x))),  y = h + g Drop(FFN(LN2(h)))
//   post: h = LN1(x + g Drop(Attn(x))),  y = LN2(h + g Drop(FFN(h)))
// x is (B, T, H) (batch first); the mask is a (B, T) key padding mask, true (or 1) = padding, or
// undefined. Dropout follows the module's train()/eval() mode and LibTorch's generator (not
// pld::cpu's Philox masks: the two agree exactly only with dropout off).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

#include "pld/core/error.hpp"
#include "pld/layer/layer_config.hpp"

namespace pld::libtorch {

class EncoderLayerImpl : public torch::nn::Module {
 public:
  explicit EncoderLayerImpl(const LayerConfig& config) : config_((config.validate(), config)) {
    const int H = config_.hidden, F = config_.ffn_size();
    self_attn = register_module(
        "self_attn", torch::nn::MultiheadAttention(torch::nn::MultiheadAttentionOptions(H, config_.heads).dropout(config_.attention_dropout)));
    linear1 = register_module("linear1", torch::nn::Linear(H, F));
    linear2 = register_module("linear2", torch::nn::Linear(F, H));
    norm1 = register_module("norm1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(config_.ln_eps)));
    norm2 = register_module("norm2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({H}).eps(config_.ln_eps)));
  }

  const LayerConfig& config() const { return config_; }

  at::Tensor forward(const at::Tensor& x, const at::Tensor& key_padding_mask = {}, double scale = 1.0) {
    if (x.dim() != 3 || x.size(2) != config_.hidden)
      detail::throw_error("EncoderLayer: input must be (B, T, ", config_.hidden, "), got ", x.sizes());
    at::Tensor mask;
    if (key_padding_mask.defined()) {
      if (key_padding_mask.dim() != 2 || key_padding_mask.size(0) != x.size(0) || key_padding_mask.size(1) != x.size(1))
        detail::throw_error("EncoderLayer: key padding mask must be (B, T) = (", x.size(0), ", ", x.size(1), "), got ",
                            key_padding_mask.sizes());
      mask = key_padding_mask.to(torch::kBool);
    }
    if (config_.norm == NormPosition::pre) {
      at::Tensor h = x + scale * branch_dropout(attention(norm1(x), mask));
      return h + scale * branch_dropout(ffn(norm2(h)));
    }
    at::Tensor h = norm1(x + scale * branch_dropout(attention(x, mask)));
    return norm2(h + scale * branch_dropout(ffn(h)));
  }

  torch::nn::MultiheadAttention self_attn{nullptr};
  torch::nn::Linear linear1{nullptr}, linear2{nullptr};
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};

 private:
  at::Tensor attention(const at::Tensor& in, const at::Tensor& mask) {
    const at::Tensor t = in.transpose(0, 1);  // LibTorch's MultiheadAttention is (T, B, H)
    return std::get<0>(self_attn(t, t, t, mask, /*need_weights=*/false)).transpose(0, 1);
  }
  at::Tensor ffn(const at::Tensor& in) {
    return linear2(torch::gelu(linear1(in), config_.gelu == GeluForm::tanh ? "tanh" : "none"));
  }
  at::Tensor branch_dropout(const at::Tensor& t) { return torch::dropout(t, config_.hidden_dropout, is_training()); }

  LayerConfig config_;
};
TORCH_MODULE(EncoderLayer);

// Copies tensors named and shaped as pld::layer_tensor_shapes (pld::cpu::LayerParams::tensors(),
// a pld-bert checkpoint's layer) into `module`'s parameters of the same names; `type` is the
// element type behind TensorRef::data (kFloat or kDouble). A missing name or another shape is a
// pld::Error and leaves the module unchanged.
inline void load_tensors(torch::nn::Module& module, const std::vector<TensorRef>& tensors, at::ScalarType type) {
  auto params = module.named_parameters();
  std::vector<std::pair<at::Tensor, at::Tensor>> copies;
  for (const TensorRef& t : tensors) {
    const at::Tensor* p = params.find(t.name);
    if (!p) detail::throw_error("load_tensors: the module has no parameter '", t.name, "'");
    const std::vector<std::int64_t> shape(t.shape.begin(), t.shape.end());
    if (p->sizes() != at::IntArrayRef(shape) || static_cast<std::size_t>(p->numel()) != t.size)
      detail::throw_error("load_tensors: '", t.name, "' is ", p->sizes(), " in the module but ", at::IntArrayRef(shape), " in the source");
    copies.emplace_back(*p, torch::from_blob(t.data, shape, torch::TensorOptions().dtype(type)));
  }
  torch::NoGradGuard no_grad;
  for (auto& [dst, src] : copies) dst.copy_(src);
}

// The reverse: `module`'s parameters into the TensorRefs' memory (same names, shapes, `type`).
inline void store_tensors(torch::nn::Module& module, const std::vector<TensorRef>& tensors, at::ScalarType type) {
  auto params = module.named_parameters();
  for (const TensorRef& t : tensors) {
    const at::Tensor* p = params.find(t.name);
    if (!p || static_cast<std::size_t>(p->numel()) != t.size)
      detail::throw_error("store_tensors: the module has no parameter '", t.name, "' of ", t.size, " elements");
  }
  for (const TensorRef& t : tensors) {
    const at::Tensor& p = *params.find(t.name);
    const std::vector<std::int64_t> shape(t.shape.begin(), t.shape.end());
    torch::from_blob(t.data, shape, torch::TensorOptions().dtype(type)).copy_(p.detach().to(torch::kCPU));
  }
}

}  // namespace pld::libtorch
