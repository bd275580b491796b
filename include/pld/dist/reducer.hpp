// Gradient reduction that knows the LayerPlan. Parameters are grouped in buckets, one per layer
// plus one for everything outside the layers (embeddings, heads). Each step, a layer's bucket is
// all-reduced only when the plan ran the layer: every rank computes the same plan from
// (seed, step) without talking, so a dropped layer has no gradient on any rank and sends nothing
// at all. A bucket's all-reduce starts as soon as its layer's backward is done (layer_done), so
// communication overlaps the backward of the layers below; finish() reduces the shared bucket,
// waits for everything and writes the averages back.
//
// The gradients live where the communicator's sums do: host memory for MpiCommunicator, device
// memory for NcclCommunicator. The reducer packs each bucket into a staging buffer the
// communicator allocated and moves every value through Communicator::copy, so it never
// dereferences a gradient or staging pointer itself.
//
// Per-sample granularity: the plan is the global batch's (every rank computes it whole and runs
// its own rows); a layer's bucket is reduced when any row of the global batch ran it, so a rank
// whose rows all skipped the layer contributes zeros and the average stays right.
//
// Every `check_every` steps the ranks compare a hash of their plans (one tiny all-reduce): a rank
// with another seed, step or schedule is one clear error instead of silently diverging weights.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/dist/communicator.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/hooks/state.hpp"  // detail::fnv1a64

namespace pld::dist {

struct ReducerOptions {
  std::int64_t check_every = 100;  // compare plan hashes every N steps (0: never)
  bool average = true;             // the mean over ranks (each rank's share scaled by 1 / ranks), not the sum
};

// What one step sent.
struct StepTraffic {
  std::uint64_t bytes = 0;        // gradient bytes this rank contributed to all-reduces
  int buckets = 0;                // buckets reduced
  int layers_reduced = 0;         // of which layers
};

// The FNV-1a hash of a plan's decisions: step, keep flags, per-sample rows.
inline std::uint64_t plan_hash(const LayerPlan& plan) {
  std::string bytes(reinterpret_cast<const char*>(&plan.step), sizeof plan.step);
  bytes.append(reinterpret_cast<const char*>(plan.keep.data()), plan.keep.size());
  bytes.append(reinterpret_cast<const char*>(plan.sample_keep.data()), plan.sample_keep.size());
  return pld::detail::fnv1a64(bytes);
}

class GradientReducer {
 public:
  // `comm` must outlive the reducer (its staging buffers are the communicator's memory).
  GradientReducer(Communicator& comm, int num_layers, ReducerOptions options = {})
      : comm_(comm), options_(options), buckets_(static_cast<std::size_t>(num_layers) + 1) {
    if (num_layers <= 0) pld::detail::throw_error("GradientReducer: num_layers must be > 0, got ", num_layers);
  }
  ~GradientReducer() {
    for (Bucket& b : buckets_) comm_.deallocate(b.staging);
  }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  // Registers a gradient tensor (in the communicator's memory): `layer` in 0..L-1, or -1 for
  // parameters outside the layers.
  void add(int layer, float* grad, std::size_t size) {
    if (layer < -1 || layer >= num_layers()) pld::detail::throw_error("GradientReducer::add: layer ", layer, " outside -1..", num_layers() - 1);
    if (in_step_) pld::detail::throw_error("GradientReducer::add during a step (between begin_step and finish)");
    Bucket& b = bucket(layer);
    b.spans.push_back({grad, size});
    b.size += size;
  }

  int num_layers() const { return static_cast<int>(buckets_.size()) - 1; }
  // Gradient floats registered for `layer` (-1: outside the layers).
  std::size_t bucket_size(int layer) { return bucket(layer).size; }

  // A new step under `plan`: which buckets will be reduced; the plan check when it is due.
  void begin_step(const LayerPlan& plan) {
    if (plan.num_layers() != num_layers())
      pld::detail::throw_error("GradientReducer: plan has ", plan.num_layers(), " layers, the reducer ", num_layers());
    for (int l = 0; l < num_layers(); ++l) {
      Bucket& b = bucket(l);
      b.reduce = plan.kept(l);  // per-sample: kept() is true when any row of the global batch ran it
      b.started = false;
    }
    Bucket& shared = bucket(-1);
    shared.reduce = true;
    shared.started = false;
    for (Bucket& b : buckets_)  // staging for what was registered since the last step
      if (b.allocated != b.size) {
        comm_.deallocate(b.staging);
        b.staging = nullptr;
        b.allocated = 0;
        b.staging = comm_.allocate(b.size);
        b.allocated = b.size;
      }
    traffic_ = {};
    if (options_.check_every > 0 && plan.step % options_.check_every == 0) {
      std::uint64_t lo = 0, hi = 0;
      comm_.min_max(plan_hash(plan), lo, hi);
      if (lo != hi)
        pld::detail::throw_error("the ranks' gate plans differ at step ", plan.step, " (rank ", comm_.rank(), " of ", comm_.size(),
                                 "): every rank needs the same seed, schedule and step");
    }
    in_step_ = true;
  }

  // Layer `layer`'s backward is done: its gradients are final for this step. Starts their
  // all-reduce when the plan ran the layer; a dropped layer sends nothing.
  void layer_done(int layer) {
    if (!in_step_) pld::detail::throw_error("GradientReducer::layer_done without begin_step");
    start(bucket(layer), layer >= 0);
  }

  // Reduces what is left (the shared bucket, any layer not reported), waits for all, writes the
  // averaged gradients back. Returns what this step sent.
  StepTraffic finish() {
    if (!in_step_) pld::detail::throw_error("GradientReducer::finish without begin_step");
    for (int l = num_layers() - 1; l >= -1; --l) start(bucket(l), l >= 0);
    for (Bucket& b : buckets_) {
      if (!b.started) continue;
      comm_.wait(b.handle);
      std::size_t at = 0;
      for (const Span& s : b.spans) {
        comm_.copy(s.data, b.staging + at, s.size);
        at += s.size;
      }
    }
    in_step_ = false;
    total_bytes_ += traffic_.bytes;
    return traffic_;
  }

  // Gradient bytes sent since construction.
  std::uint64_t total_bytes() const { return total_bytes_; }
  Communicator& communicator() { return comm_; }

 private:
  struct Span {
    float* data;
    std::size_t size;
  };
  struct Bucket {
    std::vector<Span> spans;
    std::size_t size = 0;       // floats registered
    float* staging = nullptr;   // the bucket packed contiguously, reduced in place (comm_'s memory)
    std::size_t allocated = 0;  // floats in staging
    bool reduce = false, started = false;
    int handle = 0;
  };

  Bucket& bucket(int layer) { return buckets_[static_cast<std::size_t>(layer + 1)]; }

  void start(Bucket& b, bool is_layer) {
    if (b.started || !b.reduce || b.size == 0) return;
    std::size_t at = 0;
    for (const Span& s : b.spans) {
      comm_.copy(b.staging + at, s.data, s.size);
      at += s.size;
    }
    const float scale = options_.average ? 1.0f / static_cast<float>(comm_.size()) : 1.0f;
    b.handle = comm_.start_scaled_sum(b.staging, b.size, scale);
    b.started = true;
    traffic_.bytes += b.size * sizeof(float);
    traffic_.buckets += 1;
    traffic_.layers_reduced += is_layer ? 1 : 0;
  }

  Communicator& comm_;
  ReducerOptions options_;
  std::vector<Bucket> buckets_;  // [0]: outside the layers, [1 + l]: layer l
  StepTraffic traffic_;
  std::uint64_t total_bytes_ = 0;
  bool in_step_ = false;
};

}  // namespace pld::dist
