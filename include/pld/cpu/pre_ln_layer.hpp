// The Transformer encoder layer on the CPU, gate-aware, Pre-LN (the default):
//   h = x + g * Dropout(Wo MHA(LN1(x), mask) + bo)
//   y = h + g * Dropout(W2 GELU(W1 LN2(h) + b1) + b2)
// or Post-LN (LayerConfig::norm = post, BERT's original layer):
//   h = LN1(x + g * Dropout(Wo MHA(x, mask) + bo))
//   y = LN2(h + g * Dropout(W2 GELU(W1 h + b1) + b2))
// g is the layer's gate scale from the LayerPlan (1/p_l when kept). A dropped layer is the
// identity: no work, no saved activations, gradients pass straight through. In per-sample mode
// only the kept rows are computed (gather, compute, scatter).
//
// Since session 11 this is the layer logic written once for every backend (pld::BasicPreLnLayer,
// pld/layer/) on the CPU backend (cpu::LayerBackend, layer_backend.hpp), with the interface this
// class always had: it owns its workspace (freed by a dropped step) and runs when called. Scalar
// is float for training, double for gradient checks, pld::cpu::bf16 for bf16 storage (statistics
// and gradients in fp32). The products run on the layer's own Gemm: oneDNN (fp32, or bf16 operands
// with fp32 accumulation when constructed with Precision::bf16 / native) or Eigen.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pld/cpu/gemm.hpp"
#include "pld/cpu/layer_backend.hpp"
#include "pld/cpu/layer_params.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/layer/layer_step.hpp"
#include "pld/layer/workspace.hpp"

namespace pld::cpu {

using pld::LayerStep;
using pld::NormPosition;

template <class Scalar>
class PreLnLayer {
 public:
  using Layer = SharedPreLnLayer<Scalar>;
  using Params = typename Layer::Params;  // LayerParams<Scalar>
  using Grads = typename Layer::Grads;    // LayerParams<arith_t<Scalar>>, zero at construction

  // Parameters start as LayerParams' defaults (LayerNorm weights 1, the rest 0; init_normal() for
  // BERT's initialisation), gradients at zero.
  explicit PreLnLayer(const LayerConfig& config, Precision precision = Precision::fp32) : layer_(config, precision) {
    static_cast<LayerParams<Scalar>&>(layer_.params()) = LayerParams<Scalar>(config);
  }

  // The products' engine: its precision and the implementation that ran last.
  const Gemm& gemm() const { return layer_.handle(); }

  const LayerConfig& config() const { return layer_.config(); }
  Params& params() { return layer_.params(); }
  const Params& params() const { return layer_.params(); }
  // Parameter gradients; backward accumulates into them (+=). Zero them per optimizer step.
  Grads& grads() { return layer_.grads(); }
  // The shared layer underneath (its launches(), workspace_sizes(), ...).
  const Layer& shared() const { return layer_; }

  // x, y: (B, T, H). valid: (B, T), 1 = real token, 0 = padding; null = no padding. y may equal x.
  void forward(const Scalar* x, Scalar* y, int batch, int seq, const std::uint8_t* valid, const LayerStep& step) {
    const WorkspaceSizes sz = layer_.workspace_sizes(batch, seq, step);  // checks the shape first
    check_valid_mask(valid, batch, seq);
    if (sz.saved == 0) {  // a dropped layer (or no kept row) holds no memory
      saved_.resize(0);
      scratch_.resize(0);
    } else {
      saved_.grow(sz.saved);
      scratch_.grow(sz.scratch);
    }
    ws_ = Workspace{saved_.data(), saved_.bytes(), scratch_.data(), scratch_.bytes()};
    layer_.forward(x, y, batch, seq, valid, step, ws_, Stream{});
  }

  // dy, dx: (B, T, H) of the last forward. dx is written (may equal dy); parameter gradients
  // accumulate.
  void backward(const Scalar* dy, Scalar* dx) { layer_.backward(dy, dx, ws_, Stream{}); }

  // Bytes the last forward saved for the backward (0 after a dropped layer).
  std::size_t saved_bytes() const { return saved_.bytes(); }

  // FLOPs of one forward on (batch, seq) rows (GEMMs only: 2 per multiply-add); backward is 2x.
  static double forward_flops(const LayerConfig& c, int batch, int seq) { return layer_forward_flops(c, batch, seq); }

 private:
  Layer layer_;
  AlignedBuffer saved_, scratch_;
  Workspace ws_{};
};

}  // namespace pld::cpu
