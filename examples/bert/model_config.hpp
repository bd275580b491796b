// What pld-bert's model is, apart from where it runs: its configuration, the entry a trainable
// tensor has in the optimizer's and the checkpoint's list, and the loss of one micro-batch.
// The model's algorithm is model_logic.hpp; its backends are cpu_backend.hpp and cuda_backend.cuh.
// Light on purpose (no GEMM, no Eigen): CUDA translation units include it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "pld/cpu/precision.hpp"
#include "pld/layer/layer_config.hpp"

namespace bert {

struct ModelConfig {
  int vocab = 8192;
  int max_len = 128;
  int layers = 4;
  int hidden = 256;
  int heads = 4;
  int ffn = 0;  // 0 = 4H
  float dropout = 0.1f;
  double ln_eps = 1e-12;  // BERT's
  std::uint64_t seed = 1;
  pld::cpu::Precision precision = pld::cpu::Precision::fp32;  // of every product's operands (fp32 accumulation)
  pld::NormPosition norm = pld::NormPosition::pre;            // post: BERT's Post-LN layers, no final LayerNorm

  pld::LayerConfig layer_config() const {
    pld::LayerConfig c;
    c.hidden = hidden;
    c.heads = heads;
    c.ffn = ffn;
    c.ln_eps = ln_eps;
    c.attention_dropout = dropout;
    c.hidden_dropout = dropout;
    c.norm = norm;
    return c;
  }
};

// One trainable tensor: its value, its gradient, the encoder layer it belongs to (-1: none) and
// whether weight decay applies (not to biases and LayerNorm).
struct Param {
  std::string name;
  float* value;
  float* grad;
  std::size_t size;
  int layer;
  bool decay;
};

struct MlmResult {
  double loss = 0.0;  // mean cross-entropy over the masked positions
  int correct = 0;    // argmax == target
  int predicted = 0;  // masked positions
};

// Whether weight decay applies to an encoder layer's tensor (by its PyTorch name): not to biases
// and LayerNorm parameters.
inline bool layer_tensor_decays(const std::string& name) {
  return name.find("bias") == std::string::npos && name.find("norm") == std::string::npos;
}

// Where the model's own tensors draw their initial values: step 1 of the param_init stream
// (the layers use step 0), one tensor id each.
enum TensorId : std::uint32_t { kTokenEmbedding = 1000, kPositionEmbedding = 1001, kHeadDense = 1002, kClassifier = 2000 };

// The rows of a (B*T) batch that carry a label (target >= 0), in order, and their labels: what
// the MLM head and the fine-tuning classifiers select. Host-side on every backend (the targets
// come from the host's data pipeline).
struct LabelledSelection {
  std::vector<int> rows, labels;
  int select(const std::vector<int>& target) {
    rows.clear();
    labels.clear();
    for (std::size_t i = 0; i < target.size(); ++i)
      if (target[i] >= 0) {
        rows.push_back(static_cast<int>(i));
        labels.push_back(target[i]);
      }
    return static_cast<int>(rows.size());
  }
};

}  // namespace bert
