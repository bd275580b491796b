// pld-bert's CPU optimizer (examples/bert/optimizer.hpp) and MLM loss (cpu_backend.hpp) against
// references written out here in double, textbook formula by formula: AdamW and LAMB over several
// steps with clipping, tensors without decay, a layer skipped while dropped and tensors that span
// several chunks; the same bits at any thread count; the loss, its gradient and the argmax.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu_backend.hpp"
#include "optimizer.hpp"

namespace {

// Parameter tensors of the sizes given, values and gradients from a seeded normal draw; tensor 0
// belongs to no layer, the others to layer (k - 1) % 2; odd tensors are not decayed.
struct Params {
  std::vector<std::vector<float>> w, g;
  std::vector<bert::Param> p;
  explicit Params(const std::vector<std::size_t>& sizes) : w(sizes.size()), g(sizes.size()) {
    std::mt19937_64 rng(7);
    std::normal_distribution<float> nd(0.0f, 0.5f);
    for (std::size_t k = 0; k < sizes.size(); ++k) {
      w[k].resize(sizes[k]);
      g[k].resize(sizes[k]);
      for (float& x : w[k]) x = nd(rng);
      p.push_back({"t" + std::to_string(k), w[k].data(), g[k].data(), sizes[k], k == 0 ? -1 : static_cast<int>((k - 1) % 2), k % 2 == 0});
    }
  }
  void draw_grads(std::uint64_t seed, float sd) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> nd(0.0f, sd);
    for (auto& t : g)
      for (float& x : t) x = nd(rng);
  }
};

// The reference: one update in double of every tensor, as the papers write it.
struct Reference {
  bert::OptimizerConfig c;
  std::vector<std::vector<double>> w, m, v;
  std::vector<std::int64_t> steps;

  Reference(const bert::OptimizerConfig& cfg, const Params& p) : c(cfg) {
    for (const auto& t : p.w) {
      w.emplace_back(t.begin(), t.end());
      m.emplace_back(t.size(), 0.0);
      v.emplace_back(t.size(), 0.0);
      steps.push_back(0);
    }
  }
  double step(const Params& p, double lr, const pld::LayerPlan& plan) {
    double sq = 0.0;
    for (const auto& t : p.g)
      for (float x : t) sq += static_cast<double>(x) * x;
    const double norm = std::sqrt(sq);
    const double clip = c.clip_norm > 0 && norm > c.clip_norm ? c.clip_norm / norm : 1.0;
    for (std::size_t k = 0; k < w.size(); ++k) {
      if (c.skip_dropped && p.p[k].layer >= 0 && !plan.kept(p.p[k].layer)) continue;
      const auto t = static_cast<double>(++steps[k]);
      const double wd = p.p[k].decay ? c.weight_decay : 0.0;
      std::vector<double> u(w[k].size());
      double ww = 0.0, uu = 0.0;
      for (std::size_t i = 0; i < w[k].size(); ++i) {
        const double gi = p.g[k][i] * clip;
        m[k][i] = c.beta1 * m[k][i] + (1 - c.beta1) * gi;
        v[k][i] = c.beta2 * v[k][i] + (1 - c.beta2) * gi * gi;
        u[i] = (m[k][i] / (1 - std::pow(c.beta1, t))) / (std::sqrt(v[k][i] / (1 - std::pow(c.beta2, t))) + c.eps) + wd * w[k][i];
        ww += w[k][i] * w[k][i];
        uu += u[i] * u[i];
      }
      const double trust = c.kind == bert::OptimizerKind::lamb && ww > 0 && uu > 0 ? std::sqrt(ww) / std::sqrt(uu) : 1.0;
      for (std::size_t i = 0; i < w[k].size(); ++i) w[k][i] -= lr * trust * u[i];
    }
    return norm;
  }
};

pld::LayerPlan plan_for(int step) {
  pld::LayerPlan plan;
  plan.keep = {1, static_cast<std::uint8_t>(step % 3 == 2 ? 0 : 1)};  // layer 1 dropped on steps 2 and 5
  plan.scale = {1.0, 1.0};
  plan.prob = {1.0, 1.0};
  return plan;
}

// Sizes: one tensor of several chunks (and a partial one), small ones, an empty one.
const std::vector<std::size_t> kSizes = {2 * bert::Optimizer::kChunk + 1234, 7, 300, 0, bert::Optimizer::kChunk, 65};

void matches_reference(bert::OptimizerKind kind) {
  bert::OptimizerConfig cfg;
  cfg.kind = kind;
  cfg.lr = 1e-2;
  cfg.weight_decay = 0.1;
  cfg.clip_norm = 50.0;
  cfg.skip_dropped = true;
  Params p(kSizes);
  bert::Optimizer opt(cfg, p.p);
  Reference ref(cfg, p);
  for (int step = 0; step < 6; ++step) {
    INFO("step " << step);
    p.draw_grads(100 + step, step == 1 ? 0.001f : 1.0f);  // step 1: below clip_norm; the others clipped
    const pld::LayerPlan plan = plan_for(step);
    const double want_norm = ref.step(p, cfg.lr * (step + 1), plan);
    const std::vector<std::vector<float>> before = p.w;
    const double norm = opt.clip(p.p);
    CHECK(norm == Approx(want_norm).epsilon(1e-12));
    opt.update(p.p, cfg.lr * (step + 1), plan);
    for (std::size_t k = 0; k < kSizes.size(); ++k) {
      INFO("tensor " << k);
      const bool skipped = p.p[k].layer == 1 && !plan.kept(1);
      if (skipped) {
        CHECK(p.w[k] == before[k]);  // untouched
      }
      double worst = 0.0, largest = 0.0;
      for (std::size_t i = 0; i < kSizes[k]; ++i) {
        worst = std::max(worst, std::abs(p.w[k][i] - ref.w[k][i]));
        largest = std::max(largest, std::abs(ref.w[k][i]));
      }
      CHECK(worst <= 2e-6 * std::max(1.0, largest));
    }
  }
  CHECK(opt.steps() == std::vector<std::int64_t>{6, 6, 4, 6, 4, 6});  // layer 1's tensors ran 4 times
  double worst_m = 0.0, worst_v = 0.0;
  for (std::size_t k = 0; k < kSizes.size(); ++k)
    for (std::size_t i = 0; i < kSizes[k]; ++i) {
      worst_m = std::max(worst_m, std::abs(opt.first_moments()[k][i] - ref.m[k][i]));
      worst_v = std::max(worst_v, std::abs(opt.second_moments()[k][i] - ref.v[k][i]));
    }
  CHECK(worst_m <= 1e-7);
  CHECK(worst_v <= 1e-7);
}

// Six steps of `kind` with `threads` OpenMP threads; the weights after them.
std::vector<std::vector<float>> run_with_threads(bert::OptimizerKind kind, int threads) {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
#else
  (void)threads;
#endif
  bert::OptimizerConfig cfg;
  cfg.kind = kind;
  cfg.clip_norm = 1.0;
  Params p(kSizes);
  bert::Optimizer opt(cfg, p.p);
  for (int step = 0; step < 6; ++step) {
    p.draw_grads(step, 1.0f);
    opt.clip(p.p);
    opt.update(p.p, 1e-3, plan_for(step));
  }
#ifdef _OPENMP
  omp_set_num_threads(saved);
#endif
  return p.w;
}

}  // namespace

TEST_CASE("pld-bert's AdamW equals the formula in double, with clipping, no-decay tensors and skipped layers", "[bert][optimizer]") {
  matches_reference(bert::OptimizerKind::adamw);
}

TEST_CASE("pld-bert's LAMB equals the formula in double (trust ratio per tensor)", "[bert][optimizer]") {
  matches_reference(bert::OptimizerKind::lamb);
}

TEST_CASE("pld-bert's optimizers give the same bits with 1 and 3 threads", "[bert][optimizer]") {
  for (auto kind : {bert::OptimizerKind::adamw, bert::OptimizerKind::lamb}) {
    INFO("kind " << static_cast<int>(kind));
    CHECK(run_with_threads(kind, 1) == run_with_threads(kind, 3));
  }
}

TEST_CASE("pld-bert's optimizer refuses tensors it was not made for, and a non-finite norm", "[bert][optimizer]") {
  Params p({10, 20});
  bert::Optimizer opt(bert::OptimizerConfig{}, p.p);
  Params other({10, 21});
  CHECK_THROWS_AS(opt.clip(other.p), pld::Error);
  Params fewer({10});
  CHECK_THROWS_AS(opt.update(fewer.p, 1e-3, plan_for(0)), pld::Error);
  opt.first_moments()[1].resize(3);  // as a checkpoint of another model would restore
  CHECK_THROWS_AS(opt.clip(p.p), pld::Error);
  Params q({10, 20});
  bert::Optimizer fresh(bert::OptimizerConfig{}, q.p);
  q.g[1][5] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(fresh.clip(q.p), Catch::Contains("not finite"));
}

TEST_CASE("pld-bert's MLM loss on the CPU equals log-sum-exp in double, with its gradient and the first argmax", "[bert][loss]") {
  const int C = 1000, M = 5;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> nd(0.0f, 4.0f);
  std::vector<float> logits(static_cast<std::size_t>(M) * C);
  for (float& x : logits) x = nd(rng);
  logits[2 * C + 10] = logits[2 * C + 900] = 40.0f;  // row 2: a tie, the first wins
  logits[4 * C + 17] = -200.0f;                      // an exponential far below the rest
  const std::vector<int> labels = {3, 999, 900, 0, 17};
  const double grad_scale = 0.5;
  std::vector<float> g = logits;
  std::vector<int> pred, pred_nograd;
  std::vector<double> row_loss;
  const bert::MlmResult r = bert::softmax_cross_entropy(g.data(), labels, C, grad_scale, true, pred, row_loss);
  std::vector<float> unchanged = logits;
  const bert::MlmResult r2 = bert::softmax_cross_entropy(unchanged.data(), labels, C, grad_scale, false, pred_nograd, row_loss);
  CHECK(unchanged == logits);  // without the gradient the logits stay
  CHECK(r2.loss == r.loss);
  CHECK(pred_nograd == pred);

  double want_loss = 0.0;
  int want_correct = 0;
  for (int m = 0; m < M; ++m) {
    const float* l = logits.data() + static_cast<std::size_t>(m) * C;
    const int arg = static_cast<int>(std::max_element(l, l + C) - l);  // the first of equal maxima
    CHECK(pred[static_cast<std::size_t>(m)] == arg);
    want_correct += arg == labels[static_cast<std::size_t>(m)];
    double sum = 0.0;
    for (int v = 0; v < C; ++v) sum += std::exp(static_cast<double>(l[v]) - l[arg]);
    want_loss += std::log(sum) + l[arg] - l[labels[static_cast<std::size_t>(m)]];
    for (int v = 0; v < C; ++v) {
      const double p = std::exp(static_cast<double>(l[v]) - l[arg]) / sum;
      const double want = grad_scale / M * (p - (v == labels[static_cast<std::size_t>(m)] ? 1.0 : 0.0));
      REQUIRE(g[static_cast<std::size_t>(m) * C + v] == Approx(want).margin(1e-7 * grad_scale / M).epsilon(1e-5));
    }
  }
  CHECK(pred[2] == 10);
  CHECK(r.predicted == M);
  CHECK(r.correct == want_correct);
  CHECK(r.loss == Approx(want_loss / M).epsilon(1e-6));
}
