// The GPU pretraining kernels (embedding, MLM loss, fused optimizers) as written, compiled by the
// host compiler and run on the SIMT emulator, against pld-bert's CPU model and optimizer:
// embeddings and their gradients in double, the softmax cross-entropy and its gradient, AdamW and
// LAMB steps (clipping, per-tensor step counts of skipped tensors, weight decay off for some
// tensors, the bf16 storage copy) against bert::Optimizer, and an fp16 overflow step skipped and
// counted. What it cannot show: timing, races between warps, device memory (no GPU here).
#include "cuda/simt_emulator.hpp"  // first: the emulator's threadIdx, shuffles and launch

#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "cuda/train_data.hpp"
#include "optimizer.hpp"  // examples/bert: the CPU optimizer the GPU one must equal
#include "pld/cuda/embedding.cuh"
#include "pld/cuda/mlm_loss.cuh"
#include "pld/cuda/optimizer.cuh"

namespace pc = pld::cuda;

namespace {

using pld::test::in_storage;
template <class T>
float as_float(T v) {
  return pc::to_float(v);
}

using pld::test::float_normals;

// The storage type's rounding of one value, as a relative bound for comparisons.
template <class T>
double storage_eps() {
  if (std::is_same_v<T, float>) return 1e-6;
  if (std::is_same_v<T, pc::bf16>) return 8e-3;
  return 1e-3;
}

}  // namespace

TEMPLATE_TEST_CASE("SIMT embedding forward and deterministic backward equal the CPU sums", "[cuda-simt][train]", float, pc::bf16) {
  using T = TestType;
  const int B = 3, S = 5, H = 40, V = 11;  // H > 32: every lane has columns, some two
  const std::vector<float> tok = float_normals(static_cast<std::size_t>(V) * H, 1), pos = float_normals(static_cast<std::size_t>(S) * H, 2);
  std::vector<int> ids = {3, 7, 3, 0, 10, 7, 7, 1, 3, 3, 5, 0, 2, 10, 4};  // repeats: the scatter must sum them
  REQUIRE(ids.size() == static_cast<std::size_t>(B * S));
  const auto tok_s = in_storage<T>(tok), pos_s = in_storage<T>(pos);
  std::vector<T> y(static_cast<std::size_t>(B) * S * H);
  pc::LaunchCounts counts;
  pc::embedding_forward(ids.data(), tok_s.data(), pos_s.data(), y.data(), B, S, H, nullptr, counts);
  for (int r = 0; r < B * S; ++r)
    for (int c = 0; c < H; ++c) {
      const double want = static_cast<double>(as_float(tok_s[ids[r] * H + c])) + as_float(pos_s[(r % S) * H + c]);
      REQUIRE(std::abs(as_float(y[static_cast<std::size_t>(r) * H + c]) - want) <= storage_eps<T>() * (std::abs(want) + 1e-3));
    }

  const std::vector<float> dy_f = float_normals(y.size(), 3);
  const auto dy = in_storage<T>(dy_f);
  const pc::EmbeddingGradPlan plan = pc::EmbeddingGradPlan::build(ids.data(), B * S, V);
  CHECK(plan.groups() == 8);  // distinct ids above
  auto backward = [&] {
    std::vector<float> dtok(tok.size(), 0.5f), dpos(pos.size(), -0.25f);  // accumulates into what is there
    pc::embedding_backward(dy.data(), plan.ids_unique.data(), plan.offsets.data(), plan.rows.data(), plan.groups(), B, S, H,
                           dtok.data(), dpos.data(), nullptr, counts);
    return std::make_pair(dtok, dpos);
  };
  const auto [dtok, dpos] = backward();
  std::vector<double> want_tok(tok.size(), 0.5), want_pos(pos.size(), -0.25);
  for (int r = 0; r < B * S; ++r)
    for (int c = 0; c < H; ++c) {
      const double g = as_float(dy[static_cast<std::size_t>(r) * H + c]);
      want_tok[static_cast<std::size_t>(ids[r]) * H + c] += g;
      want_pos[static_cast<std::size_t>(r % S) * H + c] += g;
    }
  for (std::size_t i = 0; i < dtok.size(); ++i) REQUIRE(std::abs(dtok[i] - want_tok[i]) < 1e-5);
  for (std::size_t i = 0; i < dpos.size(); ++i) REQUIRE(std::abs(dpos[i] - want_pos[i]) < 1e-5);
  const auto again = backward();
  CHECK(again.first == dtok);  // no atomics: the same bits every run
  CHECK(again.second == dpos);

  ids[4] = V;  // an id past the table: refused on the host, where the ids are made
  CHECK_THROWS_WITH(pc::EmbeddingGradPlan::build(ids.data(), B * S, V), Catch::Contains("token id 11 at row 4"));
  ids[4] = -1;
  CHECK_THROWS_AS(pc::EmbeddingGradPlan::build(ids.data(), B * S, V), pld::Error);
}

TEMPLATE_TEST_CASE("SIMT softmax cross-entropy: loss, gradient and argmax against double", "[cuda-simt][train]", float, pc::bf16) {
  using T = TestType;
  const int R = 5, V = 75;  // V > 64: three columns on some lanes
  std::vector<float> x = float_normals(static_cast<std::size_t>(R) * V, 9, 3.0f);
  std::vector<int> targets = {4, 74, -1, 0, 33};
  // Row 3: a tie for the maximum at columns 10 and 60: the first one counts as the prediction.
  x[3 * V + 10] = x[3 * V + 60] = 50.0f;
  targets[3] = 10;
  auto logits = in_storage<T>(x);
  const auto in = logits;
  std::vector<float> loss(R, -1.0f);
  std::vector<int> correct(R, -1);
  const float scale = 0.25f;
  pc::LaunchCounts counts;
  pc::softmax_cross_entropy(logits.data(), targets.data(), R, V, scale, loss.data(), correct.data(), nullptr, counts);
  for (int r = 0; r < R; ++r) {
    INFO("row " << r);
    if (targets[r] < 0) {
      CHECK(loss[r] == 0.0f);
      CHECK(correct[r] == 0);
      for (int c = 0; c < V; ++c) CHECK(as_float(logits[r * V + c]) == 0.0f);
      continue;
    }
    double m = -1e300;
    int arg = 0;
    for (int c = 0; c < V; ++c)
      if (as_float(in[r * V + c]) > m) {
        m = as_float(in[r * V + c]);
        arg = c;
      }
    double s = 0.0;
    for (int c = 0; c < V; ++c) s += std::exp(as_float(in[r * V + c]) - m);
    const double want_loss = std::log(s) + m - as_float(in[r * V + targets[r]]);
    CHECK(std::abs(loss[r] - want_loss) < 1e-4 * (1.0 + want_loss));
    CHECK(correct[r] == (arg == targets[r] ? 1 : 0));
    for (int c = 0; c < V; ++c) {
      const double p = std::exp(as_float(in[r * V + c]) - m) / s;
      const double want = (p - (c == targets[r] ? 1.0 : 0.0)) * scale;
      REQUIRE(std::abs(as_float(logits[r * V + c]) - want) <= storage_eps<T>() * std::abs(want) + 1e-6);
    }
  }
  CHECK(correct[3] == 1);
}

namespace {

// A small "model" for the optimizer tests: tensors of several sizes (one spans several chunks),
// some without weight decay, one in a layer that the plan drops on some steps.
struct OptCase {
  std::vector<std::vector<float>> w, g;
  std::vector<bert::Param> params;
  explicit OptCase(std::uint64_t seed) {
    const std::vector<std::size_t> sizes = {5000, 37, 2048, 1};
    for (std::size_t t = 0; t < sizes.size(); ++t) {
      w.push_back(float_normals(sizes[t], seed + t, 0.5f));
      g.emplace_back(sizes[t], 0.0f);
    }
    for (std::size_t t = 0; t < sizes.size(); ++t)
      params.push_back(bert::Param{"t" + std::to_string(t), w[t].data(), g[t].data(), sizes[t], t == 2 ? 0 : -1, t != 1});
  }
  void set_grads(std::uint64_t seed, float sd) {
    for (std::size_t t = 0; t < g.size(); ++t) {  // in place: params point into g
      const std::vector<float> r = float_normals(g[t].size(), seed * 31 + t, sd);
      std::copy(r.begin(), r.end(), g[t].begin());
    }
  }
};

template <class T>
void optimizer_matches_cpu(bert::OptimizerKind kind) {
  bert::OptimizerConfig cfg;
  cfg.kind = kind;
  cfg.lr = 2e-2;
  cfg.weight_decay = 0.1;
  cfg.clip_norm = 1.0;
  cfg.skip_dropped = true;
  OptCase cpu(5), gpu(5);
  bert::Optimizer ref(cfg, cpu.params);
  std::vector<std::vector<float>> m, v;
  std::vector<std::vector<T>> model;
  std::vector<std::int64_t> steps(gpu.w.size(), 0);
  for (auto& x : gpu.w) {
    m.emplace_back(x.size(), 0.0f);
    v.emplace_back(x.size(), 0.0f);
    model.emplace_back(x.size());
  }
  std::vector<float> stats(pc::kOptimizerStats, 0.0f);
  pc::LaunchCounts counts;
  for (int step = 0; step < 6; ++step) {
    INFO("step " << step);
    const float sd = step == 1 ? 0.01f : 1.0f;  // step 1: small gradients, no clipping
    cpu.set_grads(static_cast<std::uint64_t>(step), sd);
    gpu.set_grads(static_cast<std::uint64_t>(step), sd);
    pld::LayerPlan plan;
    plan.keep = {static_cast<std::uint8_t>(step % 3 == 2 ? 0 : 1)};  // layer 0 dropped on steps 2 and 5
    plan.scale = {1.0};
    plan.prob = {1.0};

    const double norm = ref.clip(cpu.params);
    ref.update(cpu.params, cfg.lr, plan);

    // The GPU step: the host describes the tensors that run this step (skipped ones left out).
    std::vector<pc::OptimizerTensor> tensors;
    for (std::size_t t = 0; t < gpu.w.size(); ++t) {
      const bert::Param& p = gpu.params[t];
      if (p.layer >= 0 && !plan.kept(p.layer)) continue;
      const std::int64_t k = ++steps[t];
      pc::OptimizerTensor x;
      x.master = gpu.w[t].data();
      x.grad = gpu.g[t].data();
      x.m = m[t].data();
      x.v = v[t].data();
      x.model = model[t].data();
      x.n = static_cast<std::int64_t>(p.size);
      x.weight_decay = p.decay ? static_cast<float>(cfg.weight_decay) : 0.0f;
      x.bc1 = static_cast<float>(1.0 - std::pow(cfg.beta1, static_cast<double>(k)));
      x.bc2 = static_cast<float>(1.0 - std::pow(cfg.beta2, static_cast<double>(k)));
      tensors.push_back(x);
    }
    // The global norm covers every gradient, skipped tensors too (as the CPU's clip does): the
    // norm pass gets a table of all tensors, the update one of those that run.
    std::vector<pc::OptimizerTensor> all;
    for (std::size_t t = 0; t < gpu.w.size(); ++t) {
      pc::OptimizerTensor x;
      x.master = gpu.w[t].data();
      x.grad = gpu.g[t].data();
      x.m = m[t].data();
      x.v = v[t].data();
      x.n = static_cast<std::int64_t>(gpu.w[t].size());
      all.push_back(x);
    }
    const auto all_chunks = pc::make_optimizer_chunks(all);
    const auto chunks = pc::make_optimizer_chunks(tensors);
    CHECK(chunks.size() >= tensors.size());
    pc::OptimizerHyper h;
    h.lr = static_cast<float>(cfg.lr);
    h.beta1 = static_cast<float>(cfg.beta1);
    h.beta2 = static_cast<float>(cfg.beta2);
    h.eps = static_cast<float>(cfg.eps);
    h.clip_norm = static_cast<float>(cfg.clip_norm);
    std::vector<float> scratch(static_cast<std::size_t>(pc::optimizer_scratch(static_cast<int>(all_chunks.size()), static_cast<int>(all.size()))));
    pc::optimizer_grad_norm(all.data(), all_chunks.data(), static_cast<int>(all_chunks.size()), h, scratch.data(), stats.data(), nullptr,
                            counts);
    CHECK(std::abs(stats[0] - norm) < 1e-4 * norm);
    const int nc = static_cast<int>(chunks.size()), nt = static_cast<int>(tensors.size());
    if (kind == bert::OptimizerKind::adamw) {
      // adamw_step computes the norm over its own table; the update alone keeps the all-tensor norm.
      pc::adamw_update<T>(tensors.data(), chunks.data(), nc, h, stats.data(), nullptr, counts);
    } else {
      pc::lamb_update<T>(tensors.data(), nt, chunks.data(), nc, h, scratch.data(), stats.data(), nullptr, counts);
    }
    for (std::size_t t = 0; t < gpu.w.size(); ++t) {
      INFO("tensor " << t);
      double worst = 0.0;
      for (std::size_t i = 0; i < gpu.w[t].size(); ++i) worst = std::max(worst, static_cast<double>(std::abs(gpu.w[t][i] - cpu.w[t][i])));
      CHECK(worst < 2e-6);
      // The same fp32 formula; the clip factor differs in its last bits (the CPU's norm is a
      // double), which cancellation in m = b1 m + (1 - b1) g magnifies where m crosses zero: the
      // bound is relative to the tensor's largest moment.
      double worst_m = 0.0, scale_m = 0.0;
      for (std::size_t i = 0; i < m[t].size(); ++i) {
        worst_m = std::max(worst_m, std::abs(static_cast<double>(m[t][i]) - ref.first_moments()[t][i]));
        scale_m = std::max(scale_m, std::abs(static_cast<double>(ref.first_moments()[t][i])));
      }
      CHECK(worst_m <= 1e-5 * scale_m);
      if (t != 2 || plan.kept(0))
        for (std::size_t i = 0; i < gpu.w[t].size(); ++i) REQUIRE(model[t][i] == pc::from_float<T>(gpu.w[t][i]));
    }
    CHECK(steps == ref.steps());
  }
  CHECK(stats[2] == 0.0f);
}

}  // namespace

TEMPLATE_TEST_CASE("SIMT fused AdamW equals pld-bert's CPU AdamW: clipping, skipped tensors, decay, storage copy", "[cuda-simt][train]",
                   float, pc::bf16) {
  optimizer_matches_cpu<TestType>(bert::OptimizerKind::adamw);
}

TEMPLATE_TEST_CASE("SIMT fused LAMB equals pld-bert's CPU LAMB", "[cuda-simt][train]", float, pc::bf16) {
  optimizer_matches_cpu<TestType>(bert::OptimizerKind::lamb);
}

TEST_CASE("SIMT fused optimizer: an fp16 overflow step changes nothing and is counted, the loss scale is undone", "[cuda-simt][train]") {
  std::vector<pc::OptimizerTensor> tensors(1);
  std::vector<float> w(3000, 1.0f), g(3000, 0.5f), m(3000, 0.0f), v(3000, 0.0f);
  std::vector<pc::fp16> model(3000);
  tensors[0] = pc::OptimizerTensor{w.data(), g.data(), m.data(), v.data(), model.data(), 3000, 0.0f, 0.1f, 0.001f, 0, 0};
  const auto chunks = pc::make_optimizer_chunks(tensors);
  REQUIRE(chunks.size() == 2);
  std::vector<float> scratch(static_cast<std::size_t>(pc::optimizer_scratch(2, 1))), stats(pc::kOptimizerStats, 0.0f);
  pc::OptimizerHyper h;
  h.clip_norm = 0.0f;
  h.inv_loss_scale = 1.0f / 1024.0f;
  pc::LaunchCounts counts;
  g[2500] = std::numeric_limits<float>::infinity();
  pc::adamw_step<pc::fp16>(tensors.data(), chunks.data(), 2, h, scratch.data(), stats.data(), nullptr, counts);
  CHECK(stats[1] == 1.0f);
  CHECK(stats[2] == 1.0f);
  CHECK(w == std::vector<float>(3000, 1.0f));
  CHECK(m == std::vector<float>(3000, 0.0f));
  g[2500] = 0.5f;
  pc::lamb_step<pc::fp16>(tensors.data(), 1, chunks.data(), 2, h, scratch.data(), stats.data(), nullptr, counts);
  CHECK(stats[1] == 0.0f);
  CHECK(stats[2] == 1.0f);  // the running count stays
  CHECK(std::abs(stats[0] - 0.5f / 1024.0f * std::sqrt(3000.0f)) < 1e-6f);  // the unscaled norm
  CHECK(std::abs(m[0] - 0.1f * 0.5f / 1024.0f) < 1e-9f);  // moments of the unscaled gradient
  CHECK(w[0] < 1.0f);
  CHECK(pc::to_float(model[0]) == pc::to_float(pc::from_float<pc::fp16>(w[0])));
}
