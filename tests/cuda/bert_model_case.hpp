// pld-bert's GPU model against its CPU model on one tiny case: the same configuration, batch,
// gate plan and seed; every parameter's initial value and gradient by name, and the loss of two
// steps (the second accumulates into the first's gradients and reuses every buffer). Shared by
// the SIMT-emulator test (CI) and the GPU test (scripts/device-check.sh). The CPU side is compiled
// by the host compiler (bert_cpu_reference.cpp), so CUDA translation units need not include
// pld::cpu's GEMMs.
#pragma once

#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "mlm_data.hpp"
#include "model_config.hpp"
#include "optimizer_config.hpp"
#include "pld/gate/gate.hpp"
#include "pld/schedule/presets.hpp"

namespace pld::test {

inline bert::ModelConfig tiny_bert_config() {
  bert::ModelConfig c;
  c.vocab = 61;
  c.max_len = 16;
  c.layers = 3;
  c.hidden = 48;  // > 32: every lane of a row kernel has columns
  c.heads = 3;
  c.ffn = 64;
  c.dropout = 0.1f;  // on: the masks must be the same bits on both
  c.seed = 5;
  return c;
}

// B sequences of T tokens: random ids, the last `pad` positions of row 1 padding, about a
// quarter of the real positions masked with a target.
inline bert::MlmBatch tiny_bert_batch(int B, int T, int vocab, int pad) {
  std::mt19937 rng(11);
  bert::MlmBatch b;
  b.batch = B;
  b.seq = T;
  b.input.resize(static_cast<std::size_t>(B) * T);
  b.target.assign(b.input.size(), -1);
  b.valid.assign(b.input.size(), 1);
  auto token = [&] { return bert::kNumSpecial + static_cast<int>(rng() % static_cast<unsigned>(vocab - bert::kNumSpecial)); };
  for (int r = 0; r < B; ++r)
    for (int t = 0; t < T; ++t) {
      const std::size_t i = static_cast<std::size_t>(r) * T + t;
      b.input[i] = token();
      if (r == 1 && t >= T - pad) {
        b.valid[i] = 0;
        continue;
      }
      if (rng() % 4 == 0) {
        b.target[i] = b.input[i];
        b.input[i] = token();
        ++b.masked;
      }
    }
  return b;
}

// A PLD gate whose theta falls to its floor 0.5 within a few steps: its plans drop layers often.
inline Gate dropping_gate(int layers, std::uint64_t seed, Granularity g) {
  ScheduleSpec spec;
  spec.preset = Preset::pld;
  spec.num_layers = layers;
  spec.theta_bar = 0.5;
  spec.gamma = 1.0;
  GateConfig o;
  o.seed = seed;
  o.granularity = g;
  return Gate(make_schedule(spec), o);
}

// The first training step of a PLD schedule whose plan drops at least one layer (per-sample: one
// row of one layer) and keeps at least one; `rows` > 0 makes a per-sample plan for that batch.
inline LayerPlan plan_with_a_drop(int layers, int rows) {
  const Gate gate = dropping_gate(layers, 3, rows > 0 ? Granularity::sample : Granularity::layer);
  const int n = rows > 0 ? rows : 1;
  for (std::int64_t step = 1; step < 1000; ++step) {
    LayerPlan p = gate.plan(step, true, rows);
    int kept = 0;
    for (int l = 0; l < layers; ++l)
      for (int r = 0; r < n; ++r) kept += p.sample_kept(l, r) ? 1 : 0;
    if (kept > 0 && kept < layers * n) return p;
  }
  detail::throw_error("plan_with_a_drop: no step of the schedule drops a layer");
}

// What one model did: its tensors' names, layers, initial values and gradients (as float), and
// per step the loss and hits.
struct BertModelRun {
  std::vector<std::string> names;
  std::vector<int> layers;
  std::vector<std::vector<float>> init, grad;
  std::vector<double> loss;
  std::vector<int> correct, predicted;
};

constexpr int kBertCaseSteps = 2;
constexpr std::uint64_t kBertCaseSeed = 9;
constexpr double kBertCaseGradScale = 0.5;

// The CPU model on the case (bert_cpu_reference.cpp); `round` maps each initial value to what the
// GPU model's storage holds (the identity for fp32), so both start from the same numbers.
// row_offset: the batch's rows start there in a global batch (a data-parallel shard; per-sample
// plans then have at least row_offset + B rows).
BertModelRun run_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const LayerPlan& plan, const std::function<float(float)>& round,
                          int row_offset = 0);

// Any model over model_logic.hpp whose parameters the `read` functions can read:
// read_value(param) and read_grad(param) return float vectors.
template <class Model, class ReadValue, class ReadGrad>
BertModelRun run_bert(Model& m, const bert::MlmBatch& b, const LayerPlan& plan, ReadValue read_value, ReadGrad read_grad, int row_offset = 0) {
  BertModelRun r;
  for (const auto& p : m.params()) {
    r.names.push_back(p.name);
    r.layers.push_back(p.layer);
    r.init.push_back(read_value(p));
  }
  m.zero_grad();
  for (int s = 0; s < kBertCaseSteps; ++s) {
    const auto res = m.step(b, plan, kBertCaseSeed, true, kBertCaseGradScale, row_offset);
    r.loss.push_back(res.loss);
    r.correct.push_back(res.correct);
    r.predicted.push_back(res.predicted);
  }
  for (const auto& p : m.params()) r.grad.push_back(read_grad(p));
  return r;
}

// Training: kBertTrainSteps optimizer steps on the case's batch, each with its own plan of a
// PLD schedule that drops layers often (--skip-dropped-updates on), recording each step's loss
// and, at the end, every tensor's fp32 weights.
constexpr int kBertTrainSteps = 4;

inline std::vector<LayerPlan> bert_train_plans(int layers) {
  const Gate gate = dropping_gate(layers, 4, Granularity::layer);
  std::vector<LayerPlan> plans;
  for (int s = 0; s < kBertTrainSteps; ++s) plans.push_back(gate.plan(s + 1));
  return plans;
}

inline bert::OptimizerConfig bert_train_optimizer(bert::OptimizerKind kind) {
  bert::OptimizerConfig o;
  o.kind = kind;
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  o.clip_norm = 0.5;  // below the case's gradient norm: clipping acts
  o.skip_dropped = true;
  return o;
}

struct BertTrainRun {
  std::vector<double> loss, norm;
  std::vector<std::vector<float>> values;
};

BertTrainRun train_cpu_bert(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o,
                            const std::function<float(float)>& round);

// Training steps [first, last): model.step, then `update(lr, plan)` returning the gradient norm.
template <class Model, class Update>
void train_bert_steps(Model& m, const bert::MlmBatch& b, const bert::OptimizerConfig& o, int first, int last, Update update, BertTrainRun& r) {
  const auto plans = bert_train_plans(m.encoder.config().layers);
  m.zero_grad();
  for (int s = first; s < last; ++s) {
    r.loss.push_back(m.step(b, plans[static_cast<std::size_t>(s)], kBertCaseSeed + static_cast<std::uint64_t>(s), true).loss);
    r.norm.push_back(update(o.lr, plans[static_cast<std::size_t>(s)]));
  }
}

// All the training steps; `read(k)` reads tensor k's fp32 weights at the end.
template <class Model, class Update, class Read>
BertTrainRun train_bert(Model& m, const bert::MlmBatch& b, const bert::OptimizerConfig& o, Update update, Read read) {
  BertTrainRun r;
  train_bert_steps(m, b, o, 0, kBertTrainSteps, update, r);
  for (std::size_t k = 0; k < m.params().size(); ++k) r.values.push_back(read(k));
  return r;
}

// Checkpoints between the devices: the CPU trains the first kBertResumeAt steps and checkpoints
// (serialized and parsed again: the bytes a file holds); a model that restores it trains the
// rest and checkpoints again.
constexpr int kBertResumeAt = 2;
bert::Checkpoint cpu_bert_checkpoint(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o);
// The CPU resuming from `from`: the losses of the remaining steps, and its checkpoint at the end.
std::pair<BertTrainRun, bert::Checkpoint> cpu_bert_resume(const bert::ModelConfig& c, const bert::MlmBatch& b, const bert::OptimizerConfig& o,
                                                          const bert::Checkpoint& from);
// Two checkpoints of the same tensors: values within weight_tol lr, moments within moment_tol of
// each tensor's largest, the same step counts. Returns the worst value difference in lr.
inline double check_checkpoints(const bert::Checkpoint& want, const bert::Checkpoint& got, double lr, double weight_tol, double moment_tol) {
  REQUIRE(got.names == want.names);
  CHECK(got.opt_steps == want.opt_steps);
  double worst = 0.0;
  for (std::size_t k = 0; k < want.names.size(); ++k) {
    INFO(want.names[k]);
    for (std::size_t i = 0; i < want.values[k].size(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(got.values[k][i]) - want.values[k][i]) / lr);
    for (const auto* pair : {&want.m, &want.v}) {
      const auto& w = (*pair)[k];
      const auto& g = pair == &want.m ? got.m[k] : got.v[k];
      double largest = 0.0, diff = 0.0;
      for (std::size_t i = 0; i < w.size(); ++i) {
        largest = std::max(largest, std::abs(static_cast<double>(w[i])));
        diff = std::max(diff, std::abs(static_cast<double>(g[i]) - w[i]));
      }
      CHECK(diff <= moment_tol * largest);
    }
  }
  CHECK(worst <= weight_tol);
  return worst;
}

// The GPU training run against the CPU one: each step's loss within loss_tol and gradient norm
// within norm_tol (relative), every final weight within weight_tol of lr (one step's update).
// Returns the worst weight difference in units of lr.
inline double check_bert_training(const BertTrainRun& cpu, const BertTrainRun& gpu, const bert::OptimizerConfig& o, double loss_tol,
                                  double norm_tol, double weight_tol) {
  for (int s = 0; s < kBertTrainSteps; ++s) {
    INFO("step " << s);
    CHECK(std::abs(gpu.loss[static_cast<std::size_t>(s)] - cpu.loss[static_cast<std::size_t>(s)]) <= loss_tol * cpu.loss[static_cast<std::size_t>(s)]);
    CHECK(std::abs(gpu.norm[static_cast<std::size_t>(s)] - cpu.norm[static_cast<std::size_t>(s)]) <= norm_tol * cpu.norm[static_cast<std::size_t>(s)]);
  }
  double worst = 0.0;
  REQUIRE(gpu.values.size() == cpu.values.size());
  for (std::size_t k = 0; k < cpu.values.size(); ++k) {
    REQUIRE(gpu.values[k].size() == cpu.values[k].size());
    for (std::size_t i = 0; i < cpu.values[k].size(); ++i)
      worst = std::max(worst, std::abs(static_cast<double>(gpu.values[k][i]) - cpu.values[k][i]) / o.lr);
  }
  CHECK(worst <= weight_tol);
  return worst;
}

// A CPU checkpoint resumed by Model with Optimizer (a GPU model and its CudaOptimizer, storage
// float): the remaining steps' losses, and its checkpoint at the end against the CPU resuming
// the same checkpoint. Returns the worst weight difference in lr.
template <class Model, class Optimizer>
double resume_like_cpu(double weight_tol) {
  const bert::ModelConfig c = tiny_bert_config();
  const bert::MlmBatch batch = tiny_bert_batch(3, 12, c.vocab, 4);
  const bert::OptimizerConfig o = bert_train_optimizer(bert::OptimizerKind::adamw);
  const bert::Checkpoint from = cpu_bert_checkpoint(c, batch, o);
  const auto [want, want_end] = cpu_bert_resume(c, batch, o, from);
  Model gpu(c);
  Optimizer opt(o, gpu.params());
  opt.restore(from, "the CPU's checkpoint");
  BertTrainRun got;
  train_bert_steps(gpu, batch, o, kBertResumeAt, kBertTrainSteps, [&](double lr, const LayerPlan& plan) { return opt.step(lr, plan).norm; }, got);
  for (std::size_t s = 0; s < want.loss.size(); ++s) CHECK(std::abs(got.loss[s] - want.loss[s]) <= 1e-6 * want.loss[s]);
  bert::Checkpoint got_end;
  opt.capture(got_end);
  got_end = bert::parse_checkpoint(bert::serialize_checkpoint(got_end), "the GPU's checkpoint");
  return check_checkpoints(want_end, got_end, o.lr, weight_tol, 1e-4);
}

// The GPU run against the CPU run: the same tensors and initial values; the loss within
// loss_tol (relative); every gradient within grad_tol of its tensor's largest; a dropped layer's
// gradients zero on both. Returns the worst gradient ratio seen (for the logs).
inline double check_bert_runs(const BertModelRun& cpu, const BertModelRun& gpu, const LayerPlan& plan, double loss_tol, double grad_tol) {
  REQUIRE(gpu.names == cpu.names);
  for (std::size_t i = 0; i < cpu.names.size(); ++i) {
    INFO(cpu.names[i]);
    REQUIRE(gpu.init[i] == cpu.init[i]);
  }
  for (int s = 0; s < kBertCaseSteps; ++s) {
    INFO("step " << s);
    CHECK(gpu.predicted[static_cast<std::size_t>(s)] == cpu.predicted[static_cast<std::size_t>(s)]);
    CHECK(gpu.correct[static_cast<std::size_t>(s)] == cpu.correct[static_cast<std::size_t>(s)]);
    CHECK(std::abs(gpu.loss[static_cast<std::size_t>(s)] - cpu.loss[static_cast<std::size_t>(s)]) <=
          loss_tol * cpu.loss[static_cast<std::size_t>(s)]);
  }
  double worst_ratio = 0.0;
  for (std::size_t i = 0; i < cpu.names.size(); ++i) {
    const auto &want = cpu.grad[i], &got = gpu.grad[i];
    REQUIRE(got.size() == want.size());
    double largest = 0.0, worst = 0.0;
    for (std::size_t k = 0; k < want.size(); ++k) {
      largest = std::max(largest, std::abs(static_cast<double>(want[k])));
      worst = std::max(worst, std::abs(static_cast<double>(got[k]) - want[k]));
    }
    INFO(cpu.names[i] << ": largest |grad| " << largest << ", worst difference " << worst);
    const int layer = cpu.layers[i];
    if (layer >= 0 && !plan.kept(layer)) {  // per-sample: kept() is "any row"
      CHECK(largest == 0.0);
      CHECK(worst == 0.0);
      continue;
    }
    CHECK(largest > 0.0);
    CHECK(worst <= grad_tol * largest);
    if (largest > 0.0) worst_ratio = std::max(worst_ratio, worst / largest);
  }
  return worst_ratio;
}

}  // namespace pld::test
