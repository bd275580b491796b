// Data parallelism over MPI, run as `mpirun -np 2 pld_dist_mpi_tests` (CTest label `dist`). A
// stack of four pld::cpu layers (H = 32; dropout 0.1 at both sites under per-layer plans) is the model; every rank runs its shard of a
// global batch of 8 under the same PLD plan and the GradientReducer averages the gradients. Rank
// 0 also runs the whole batch alone, as the reference.
//
// Tolerance for "2 ranks x 4 rows == 1 rank x 8 rows": the dropout masks are the same
// (LayerStep::first_row keys them by the row's place in the global batch), so the two differ only in the order of fp32
// additions (a weight gradient sums 32 token rows per shard, then the all-reduce adds the two
// shards; the reference sums 64 rows in one GEMM). Relative L2 error per tensor <= 1e-5: the
// worst case of 64 fp32 additions is 64 * 2^-24 = 4e-6, typical errors are ~1e-7.
#include <catch2/catch.hpp>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <memory>
#include <vector>

#include "pld/cpu.hpp"
#include "pld/dist/mpi.hpp"
#include "pld/dist/reducer.hpp"

namespace {

constexpr int kLayers = 4, kHidden = 32, kHeads = 2, kSeq = 8, kGlobalBatch = 8;

// Dropout is keyed by global rows (LayerStep::first_row; per-sample layers: the place among the
// global batch's kept rows), so the shards draw the whole batch's masks.
float dropout_for(pld::Granularity) { return 0.1f; }

pld::LayerConfig config(float dropout) {
  pld::LayerConfig c;
  c.hidden = kHidden;
  c.heads = kHeads;
  c.attention_dropout = c.hidden_dropout = dropout;
  return c;
}

std::vector<float> normals(std::size_t n, std::uint32_t id) {
  std::vector<float> v(n);
  pld::cpu::fill_normal(v, 99, 5, id, 1.0);
  return v;
}

// A stack of layers with the same weights on every rank; forward and backward over `rows`
// sequences starting at global row `first`; loss = (1 / rows) sum(y * r).
struct Stack {
  std::vector<std::unique_ptr<pld::cpu::PreLnLayer<float>>> layers;
  explicit Stack(float dropout) {
    for (int l = 0; l < kLayers; ++l) {
      layers.push_back(std::make_unique<pld::cpu::PreLnLayer<float>>(config(dropout)));
      layers.back()->params().init_normal(1000 + static_cast<std::uint64_t>(l), 0.1);
    }
  }
  void zero_grad() {
    for (auto& l : layers) l->grads().zero();
  }
  // The step under `plan`; per-sample plans are the global batch's, this stack runs rows
  // [first, first + rows). `done(l)` after layer l's backward.
  template <class Done>
  void step(const pld::LayerPlan& plan, int first, int rows, std::int64_t step, Done done) {
    const std::size_t row = static_cast<std::size_t>(kSeq) * kHidden, n = row * static_cast<std::size_t>(rows);
    const std::vector<float> x_all = normals(row * kGlobalBatch, static_cast<std::uint32_t>(step)),
                             r_all = normals(row * kGlobalBatch, static_cast<std::uint32_t>(step) + 100000);
    std::vector<float> x(x_all.begin() + static_cast<std::ptrdiff_t>(row) * first, x_all.begin() + static_cast<std::ptrdiff_t>(row) * first + static_cast<std::ptrdiff_t>(n));
    std::vector<float> dy(r_all.begin() + static_cast<std::ptrdiff_t>(row) * first, r_all.begin() + static_cast<std::ptrdiff_t>(row) * first + static_cast<std::ptrdiff_t>(n));
    for (auto& v : dy) v /= static_cast<float>(rows);
    for (int l = 0; l < kLayers; ++l) {
      // This shard's rows of the global per-sample plan, and its place for the dropout masks.
      const pld::LayerStep s = pld::LayerStep::from_plan(plan, l, 7, first);
      layers[static_cast<std::size_t>(l)]->forward(x.data(), x.data(), rows, kSeq, nullptr, s);
    }
    for (int l = kLayers - 1; l >= 0; --l) {
      layers[static_cast<std::size_t>(l)]->backward(dy.data(), dy.data());
      done(l);
    }
  }
  std::vector<float> grads() {
    std::vector<float> g;
    for (auto& l : layers)
      for (auto& t : l->grads().tensors()) g.insert(g.end(), static_cast<float*>(t.data), static_cast<float*>(t.data) + t.size);
    return g;
  }
};

pld::Gate gate(pld::Granularity granularity, std::uint64_t seed = 42) {
  pld::ScheduleSpec spec;
  spec.preset = pld::Preset::pld;
  spec.num_layers = kLayers;
  spec.theta_bar = 0.5;
  spec.gamma = 0.5;  // fast decay: layers start dropping within a few steps
  pld::GateConfig g;
  g.seed = seed;
  g.granularity = granularity;
  return pld::Gate(pld::make_schedule(spec), g);
}

void register_grads(Stack& s, pld::dist::GradientReducer& r) {
  for (int l = 0; l < kLayers; ++l)
    for (auto& t : s.layers[static_cast<std::size_t>(l)]->grads().tensors()) r.add(l, static_cast<float*>(t.data), t.size);
}

double rel_error(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (static_cast<double>(a[i]) - ref[i]) * (static_cast<double>(a[i]) - ref[i]);
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

pld::dist::MpiCommunicator& comm() {
  static pld::dist::MpiCommunicator c(MPI_COMM_WORLD, std::chrono::seconds(60));
  return c;
}

// Runs `steps` steps of the sharded stack; returns every step's reduced gradients.
std::vector<std::vector<float>> run_sharded(pld::Granularity granularity, int steps, std::vector<pld::dist::StepTraffic>* traffic = nullptr,
                                            std::vector<pld::LayerPlan>* plans = nullptr) {
  auto& c = comm();
  const int rows = kGlobalBatch / c.size(), first = c.rank() * rows;
  Stack s(dropout_for(granularity));
  pld::dist::GradientReducer reducer(c, kLayers, {/*check_every=*/1});
  register_grads(s, reducer);
  const pld::Gate g = gate(granularity);
  std::vector<std::vector<float>> out;
  for (int t = 0; t < steps; ++t) {
    const pld::LayerPlan plan = g.plan(t, true, granularity == pld::Granularity::sample ? kGlobalBatch : 0);
    s.zero_grad();
    reducer.begin_step(plan);
    s.step(plan, first, rows, t, [&](int l) { reducer.layer_done(l); });
    const pld::dist::StepTraffic tr = reducer.finish();
    if (traffic) traffic->push_back(tr);
    if (plans) plans->push_back(plan);
    out.push_back(s.grads());
  }
  return out;
}

}  // namespace

TEST_CASE("2 ranks x 4 rows give the gradients of 1 rank x 8 rows, under PLD plans", "[dist][mpi]") {
  REQUIRE(comm().size() == 2);
  const auto granularity = GENERATE(pld::Granularity::layer, pld::Granularity::sample);
  INFO("granularity " << (granularity == pld::Granularity::layer ? "layer" : "sample") << ", rank " << comm().rank());
  const int steps = 8;
  std::vector<pld::LayerPlan> plans;
  const auto sharded = run_sharded(granularity, steps, nullptr, &plans);
  int dropped = 0;
  for (const auto& p : plans) dropped += p.num_layers() - p.num_kept();
  if (comm().rank() == 0) {
    Stack ref(dropout_for(granularity));
    const pld::Gate g = gate(granularity);
    for (int t = 0; t < steps; ++t) {
      const pld::LayerPlan plan = g.plan(t, true, granularity == pld::Granularity::sample ? kGlobalBatch : 0);
      ref.zero_grad();
      ref.step(plan, 0, kGlobalBatch, t, [](int) {});
      const double e = rel_error(sharded[static_cast<std::size_t>(t)], ref.grads());
      INFO("step " << t << " relative L2 error " << e);
      CHECK(e <= 1e-5);
    }
  }
  if (granularity == pld::Granularity::layer) CHECK(dropped > 0);  // the plans did drop layers
}

TEST_CASE("the same run twice gives the same bits", "[dist][mpi]") {
  const auto a = run_sharded(pld::Granularity::layer, 6), b = run_sharded(pld::Granularity::layer, 6);
  CHECK(a == b);
}

TEST_CASE("bytes sent per step are the kept layers' gradient bytes, a dropped layer sends none", "[dist][mpi]") {
  std::vector<pld::dist::StepTraffic> traffic;
  std::vector<pld::LayerPlan> plans;
  run_sharded(pld::Granularity::layer, 10, &traffic, &plans);
  Stack s(0.1f);
  pld::dist::GradientReducer r(comm(), kLayers);
  register_grads(s, r);
  std::uint64_t sent = 0, all = 0;
  for (std::size_t t = 0; t < plans.size(); ++t) {
    std::uint64_t expect = 0;
    for (int l = 0; l < kLayers; ++l) expect += plans[t].kept(l) ? r.bucket_size(l) * sizeof(float) : 0;
    INFO("step " << t);
    CHECK(traffic[t].bytes == expect);
    CHECK(traffic[t].layers_reduced == plans[t].num_kept());
    sent += traffic[t].bytes;
    for (int l = 0; l < kLayers; ++l) all += r.bucket_size(l) * sizeof(float);
  }
  CHECK(sent < all);  // PLD dropped layers, and their gradients stayed home
}

TEST_CASE("ranks with different plans stop with one clear error", "[dist][mpi]") {
  auto& c = comm();
  Stack s(0.1f);
  pld::dist::GradientReducer reducer(c, kLayers, {/*check_every=*/1});
  register_grads(s, reducer);
  const pld::Gate g = gate(pld::Granularity::layer, c.rank() == 0 ? 42 : 43);  // rank 1 has another seed
  // Some step's plans differ (with these seeds, within the first 20 steps); every rank sees the error.
  bool caught = false;
  for (int t = 0; t < 20 && !caught; ++t) {
    try {
      reducer.begin_step(g.plan(t));
      reducer.finish();
    } catch (const pld::Error& e) {
      caught = std::string(e.what()).find("gate plans differ") != std::string::npos;
    }
  }
  CHECK(caught);
}

// Run on its own by CTest (dist.mpi-rank-killed): rank 1 kills itself with SIGKILL at step 5
// while rank 0 writes a checkpoint file (atomically) after every step. The job must end, with a
// non-zero status and a clear message, well within the timeout (no hang), and the checkpoint of
// the last finished step must be intact; tests/cli/dist_rank_killed.cmake checks all that.
TEST_CASE("a rank killed mid-run stops the others (run alone, see dist.mpi-rank-killed)", "[.rank-killed]") {
  const char* dir = std::getenv("PLD_DIST_CHECKPOINT_DIR");
  REQUIRE(dir != nullptr);
  pld::dist::MpiCommunicator c(MPI_COMM_WORLD, std::chrono::seconds(10));
  const int rows = kGlobalBatch / c.size(), first = c.rank() * rows;
  Stack s(0.1f);
  pld::dist::GradientReducer reducer(c, kLayers);
  register_grads(s, reducer);
  const pld::Gate g = gate(pld::Granularity::layer);
  for (int t = 0; t < 1000; ++t) {
    if (c.rank() == 1 && t == 5) std::raise(SIGKILL);
    const pld::LayerPlan plan = g.plan(t);
    s.zero_grad();
    reducer.begin_step(plan);
    s.step(plan, first, rows, t, [&](int l) { reducer.layer_done(l); });
    reducer.finish();
    if (c.rank() == 0) {
      const std::string path = std::string(dir) + "/checkpoint.txt", tmp = path + ".tmp";
      { std::ofstream(tmp) << "step " << t + 1 << "\n"; }
      std::rename(tmp.c_str(), path.c_str());
    }
  }
  FAIL("the run went on after rank 1 died");
}
