// LayerStep: what one layer's forward needs to know from the gate and the training loop (kept or
// not, the branch scale, dropout keys, per-sample rows). Shared by every backend.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "pld/core/error.hpp"
#include "pld/gate/layer_plan.hpp"

namespace pld {

// Where in a layer an elementwise dropout mask is applied; each site has its own random stream
// (RandomStream::dropout_base + site), the same on every backend.
enum class DropoutSite : std::uint32_t { attention_probs = 0, attention_out = 1, ffn_out = 2 };

struct LayerStep {
  bool kept = true;
  double scale = 1.0;          // g: the gate scale of the residual branches
  bool training = true;        // dropout on only when training
  std::uint64_t seed = 0;      // dropout masks: (seed, step, layer, site, element)
  std::int64_t step = 0;
  std::uint32_t layer = 0;
  const std::uint8_t* rows = nullptr;  // per-sample: (B) host memory, 1 = the row runs through this layer
  // Data parallel: the place of this call's first row among the rows the layer runs on in the
  // global batch (0 for one process). Dropout masks are keyed by an element's place there, so
  // ranks that each run their shard draw what one process over the whole batch draws, and no two
  // ranks share a mask. A per-sample layer runs on the global batch's kept rows, compacted:
  // from_plan counts the kept rows before the shard's first one.
  std::int64_t first_row = 0;

  // The step of 0-based layer `layer` as `plan` decided it, for the call that runs global rows
  // [first_row, first_row + B) (per-sample plans are the global batch's: `rows` then points at
  // this call's first row).
  static LayerStep from_plan(const LayerPlan& plan, int layer, std::uint64_t seed, std::int64_t first_row = 0) {
    if (first_row < 0 || (plan.per_sample() && first_row >= plan.batch))
      detail::throw_error("LayerStep: first row ", first_row, " is outside the plan's batch of ", plan.batch, " rows");
    LayerStep s;
    s.kept = plan.kept(layer);
    s.scale = plan.gate_scale(layer);
    s.training = plan.training;
    s.seed = seed;
    s.step = plan.step;
    s.layer = static_cast<std::uint32_t>(layer);
    s.first_row = first_row;
    if (plan.per_sample()) {
      const std::uint8_t* all = plan.sample_keep.data() + static_cast<std::size_t>(layer) * static_cast<std::size_t>(plan.batch);
      s.rows = all + first_row;
      s.first_row = std::count_if(all, all + first_row, [](std::uint8_t k) { return k != 0; });
    }
    return s;
  }
};

// A padding mask (B, T) on the host, 1 = real token: every sequence needs at least one real token
// (a query with no key to attend to has no defined attention output).
inline void check_valid_mask(const std::uint8_t* valid, int batch, int seq) {
  if (!valid) return;
  for (int b = 0; b < batch; ++b) {
    bool any = false;
    for (int t = 0; t < seq; ++t) any = any || valid[static_cast<std::size_t>(b) * static_cast<std::size_t>(seq) + static_cast<std::size_t>(t)];
    if (!any) detail::throw_error("padding mask: sequence ", b, " has no real token (all padding)");
  }
}

}  // namespace pld
