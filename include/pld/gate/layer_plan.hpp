// LayerPlan: everything a layer stack needs to know about one step: which layers run, the gate
// scale of each, the probabilities they were drawn with, and (per-sample mode) which rows run.
#pragma once

#include <cstdint>
#include <vector>

#include "pld/core/error.hpp"

namespace pld {

struct LayerPlan {
  std::int64_t step = 0;
  bool training = true;
  double theta = 1.0;                     // theta(step); 1 in evaluation
  std::vector<double> prob;               // (L) keep probability p_l used to draw the gate
  std::vector<std::uint8_t> keep;         // (L) 1 if the layer runs (per-sample: for any row)
  std::vector<double> scale;              // (L) branch scale g_l: 1/p_l or 1 if kept, 0 if dropped
  int batch = 0;                          // rows per step in per-sample mode; 0 in per-layer mode
  std::vector<std::uint8_t> sample_keep;  // (L, batch) row-major: row b runs through layer i
  std::vector<std::uint32_t> order;       // (L) scratch of the fixed-count sampler

  int num_layers() const { return static_cast<int>(keep.size()); }
  bool per_sample() const { return batch > 0; }

  bool kept(int layer) const { return keep.at(static_cast<std::size_t>(layer)) != 0; }
  double gate_scale(int layer) const { return scale.at(static_cast<std::size_t>(layer)); }

  // Whether row `sample` runs through `layer` (always the layer's decision in per-layer mode).
  bool sample_kept(int layer, int sample) const {
    if (!per_sample()) return kept(layer);
    if (sample < 0 || sample >= batch)
      detail::throw_error("sample ", sample, " out of range for batch ", batch);
    return sample_keep.at(static_cast<std::size_t>(layer) * static_cast<std::size_t>(batch) +
                          static_cast<std::size_t>(sample)) != 0;
  }

  int num_kept() const {
    int n = 0;
    for (std::uint8_t k : keep) n += k;
    return n;
  }

  // Rows of the batch that run through `layer`, in order: what a per-sample layer gathers.
  std::vector<int> kept_rows(int layer) const {
    std::vector<int> rows;
    const int n = per_sample() ? batch : 1;
    for (int b = 0; b < n; ++b)
      if (sample_kept(layer, b)) rows.push_back(b);
    return rows;
  }

  // Realised fraction of layer work this step: kept layers / L, or kept (layer, row) pairs /
  // (L * batch) in per-sample mode.
  double kept_fraction() const {
    if (keep.empty()) return 1.0;
    if (!per_sample()) return static_cast<double>(num_kept()) / static_cast<double>(keep.size());
    std::size_t n = 0;
    for (std::uint8_t k : sample_keep) n += k;
    return static_cast<double>(n) / static_cast<double>(sample_keep.size());
  }

  // Expected fraction of layer work: mean_l p_l (1 in evaluation).
  double expected_kept_fraction() const {
    if (prob.empty()) return 1.0;
    double s = 0.0;
    for (double p : prob) s += p;
    return s / static_cast<double>(prob.size());
  }
};

}  // namespace pld
