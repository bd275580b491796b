// CpuBackend::Layers (cpu_backend.hpp): the gated stack of pld::cpu layers. Compiled once here, so
// that a translation unit including the model does not instantiate the layers' forward and
// backward again (they are most of pld-bert's compile time).
#include "cpu_backend.hpp"

#include <chrono>

namespace bert {

CpuBackend::Layers::Layers(const ModelConfig& c, CpuBackend&) : bf16_(c.precision == pld::cpu::Precision::bf16), hidden_(c.hidden) {
  for (int l = 0; l < c.layers; ++l) {
    const std::uint64_t seed = c.seed + 7919u * static_cast<std::uint64_t>(l + 1);
    if (bf16_) {
      masters_.emplace_back(c.layer_config());
      masters_.back().init_normal(seed);
      half_.push_back(std::make_unique<pld::cpu::SharedPreLnLayer<pld::cpu::bf16>>(c.layer_config(), pld::cpu::Precision::bf16));
    } else {
      full_.push_back(std::make_unique<pld::cpu::PreLnLayer<float>>(c.layer_config(), c.precision));
      full_.back()->params().init_normal(seed);
    }
  }
  work_.resize(static_cast<std::size_t>(c.layers));
  ws_.resize(static_cast<std::size_t>(c.layers));
}

CpuBackend::Layers::~Layers() = default;

const pld::cpu::Gemm& CpuBackend::Layers::gemm() const { return bf16_ ? half_.front()->handle() : full_.front()->gemm(); }

void CpuBackend::Layers::collect(std::vector<Param>& out) {
  for (int l = 0; l < size(); ++l) {
    const auto i = static_cast<std::size_t>(l);
    auto ps = bf16_ ? masters_[i].tensors() : full_[i]->params().tensors();
    auto gs = bf16_ ? half_[i]->grads().tensors() : full_[i]->grads().tensors();
    for (std::size_t t = 0; t < ps.size(); ++t) {
      out.push_back({"encoder.layer." + std::to_string(l) + "." + ps[t].name, static_cast<float*>(ps[t].data),
                     static_cast<float*>(gs[t].data), ps[t].size, l, layer_tensor_decays(ps[t].name)});
    }
  }
}

void CpuBackend::Layers::forward(float* x, int B, int T, const std::vector<std::uint8_t>& valid, const pld::LayerPlan& plan,
                                 std::uint64_t seed, int row_offset) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint8_t* v = valid.empty() ? nullptr : valid.data();
  if (!bf16_) {
    for (int l = 0; l < size(); ++l) full_[static_cast<std::size_t>(l)]->forward(x, x, B, T, v, step(plan, l, seed, row_offset));
  } else {
    n_ = static_cast<std::size_t>(B) * static_cast<std::size_t>(T) * static_cast<std::size_t>(hidden_);
    act_.resize(n_);
    pld::cpu::narrow(x, act_.data(), n_);
    for (int l = 0; l < size(); ++l) {
      const auto i = static_cast<std::size_t>(l);
      auto& layer = *half_[i];
      const pld::LayerStep s = step(plan, l, seed, row_offset);
      const pld::WorkspaceSizes sz = layer.workspace_sizes(B, T, s);
      if (sz.saved > 0) round_params(i);  // the layer runs: its bf16 copy of the current masters
      work_[i].grow(sz.saved);  // per-sample plans change a layer's workspace every step
      scratch_.grow(sz.scratch);
      ws_[i] = pld::Workspace{work_[i].data(), work_[i].bytes(), scratch_.data(), scratch_.bytes()};
      layer.forward(act_.data(), act_.data(), B, T, v, s, ws_[i], {});
    }
    pld::cpu::widen(act_.data(), x, n_);
  }
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void CpuBackend::Layers::backward(float* dx, const std::function<void(int)>& layer_done) {
  const auto t0 = std::chrono::steady_clock::now();
  if (bf16_) pld::cpu::narrow(dx, act_.data(), n_);
  for (int l = size() - 1; l >= 0; --l) {
    const auto i = static_cast<std::size_t>(l);
    if (bf16_) half_[i]->backward(act_.data(), act_.data(), ws_[i], {});
    else full_[i]->backward(dx, dx);
    if (layer_done) layer_done(l);
  }
  if (bf16_) pld::cpu::widen(act_.data(), dx, n_);
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

pld::LayerStep CpuBackend::Layers::step(const pld::LayerPlan& plan, int l, std::uint64_t seed, int row_offset) {
  return pld::LayerStep::from_plan(plan, l, seed, row_offset);
}

void CpuBackend::Layers::round_params(std::size_t i) {
  auto src = masters_[i].tensors();
  auto dst = half_[i]->params().tensors();
  for (std::size_t t = 0; t < src.size(); ++t)
    pld::cpu::narrow(static_cast<const float*>(src[t].data), static_cast<pld::cpu::bf16*>(dst[t].data), src[t].size);
}

}  // namespace bert
