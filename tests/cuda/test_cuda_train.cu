// The GPU pretraining kernels on a real device against references computed here in double: the
// embedding forward and its deterministic backward (two runs, same bits), the softmax
// cross-entropy with its gradient, and one fused AdamW step with clipping and a bf16 storage copy.
// The same kernels run on the SIMT emulator in CI (tests/test_cuda_train_simt.cpp, against
// pld-bert's CPU optimizer); this file is what the first GPU run adds: real warps and memory.
#include <catch2/catch.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "pld/cuda.hpp"
#include "train_data.hpp"
#include "pld/cuda/embedding.cuh"
#include "pld/cuda/mlm_loss.cuh"
#include "pld/cuda/optimizer.cuh"

namespace pc = pld::cuda;

using pld::test::in_storage;

using pld::test::float_normals;

TEST_CASE("GPU embedding forward and deterministic backward equal double sums (bf16 tables)", "[cuda][train]") {
  using T = pc::bf16;
  const int B = 8, S = 64, H = 96, V = 50;
  pc::Stream stream;
  cudaStream_t st = stream.get();
  std::mt19937 rng(4);
  std::vector<int> ids(static_cast<std::size_t>(B) * S);
  for (int& i : ids) i = static_cast<int>(rng() % V);
  const auto tok = in_storage<T>(float_normals(static_cast<std::size_t>(V) * H, 1)), pos = in_storage<T>(float_normals(static_cast<std::size_t>(S) * H, 2));
  const auto dy = in_storage<T>(float_normals(ids.size() * H, 3));
  auto d_ids = pc::to_device(ids, st);
  auto d_tok = pc::to_device(tok, st), d_pos = pc::to_device(pos, st), d_dy = pc::to_device(dy, st);
  pc::DeviceArray<T> d_y(ids.size() * H);
  pc::LaunchCounts counts;
  pc::embedding_forward(d_ids.data(), d_tok.data(), d_pos.data(), d_y.data(), B, S, H, st, counts);
  const auto y = pc::to_host(d_y.data(), d_y.size(), st);
  for (std::size_t r = 0; r < ids.size(); ++r)
    for (int c = 0; c < H; ++c) {
      const double want = static_cast<double>(pc::to_float(tok[ids[r] * H + c])) + pc::to_float(pos[(r % S) * H + c]);
      REQUIRE(std::abs(pc::to_float(y[r * H + c]) - want) <= 8e-3 * std::abs(want) + 1e-6);
    }
  const pc::EmbeddingGradPlan plan = pc::EmbeddingGradPlan::build(ids.data(), static_cast<std::int64_t>(ids.size()), V);
  auto d_u = pc::to_device(plan.ids_unique, st), d_o = pc::to_device(plan.offsets, st), d_r = pc::to_device(plan.rows, st);
  auto backward = [&] {
    auto d_dtok = pc::to_device(std::vector<float>(static_cast<std::size_t>(V) * H, 0.0f), st);
    auto d_dpos = pc::to_device(std::vector<float>(static_cast<std::size_t>(S) * H, 0.0f), st);
    pc::embedding_backward(d_dy.data(), d_u.data(), d_o.data(), d_r.data(), plan.groups(), B, S, H, d_dtok.data(), d_dpos.data(), st,
                           counts);
    return std::make_pair(pc::to_host(d_dtok.data(), d_dtok.size(), st), pc::to_host(d_dpos.data(), d_dpos.size(), st));
  };
  const auto a = backward(), b = backward();
  CHECK(a.first == b.first);
  CHECK(a.second == b.second);
  std::vector<double> wt(static_cast<std::size_t>(V) * H, 0.0), wp(static_cast<std::size_t>(S) * H, 0.0);
  for (std::size_t r = 0; r < ids.size(); ++r)
    for (int c = 0; c < H; ++c) {
      wt[ids[r] * H + c] += pc::to_float(dy[r * H + c]);
      wp[(r % S) * H + c] += pc::to_float(dy[r * H + c]);
    }
  for (std::size_t i = 0; i < wt.size(); ++i) REQUIRE(std::abs(a.first[i] - wt[i]) < 1e-4);
  for (std::size_t i = 0; i < wp.size(); ++i) REQUIRE(std::abs(a.second[i] - wp[i]) < 1e-4);
}

TEST_CASE("GPU softmax cross-entropy equals double (fp32 logits, vocabulary 30522)", "[cuda][train]") {
  const int R = 37, V = 30522;
  pc::Stream stream;
  cudaStream_t st = stream.get();
  const std::vector<float> x = float_normals(static_cast<std::size_t>(R) * V, 7, 2.0f);
  std::vector<int> t(R);
  for (int r = 0; r < R; ++r) t[r] = r == 5 ? -1 : (r * 7919) % V;
  auto d_x = pc::to_device(x, st);
  auto d_t = pc::to_device(t, st);
  pc::DeviceArray<float> d_loss(R);
  pc::DeviceArray<int> d_correct(R);
  pc::LaunchCounts counts;
  pc::softmax_cross_entropy(d_x.data(), d_t.data(), R, V, 1.0f / 36.0f, d_loss.data(), d_correct.data(), st, counts);
  const auto g = pc::to_host(d_x.data(), d_x.size(), st);
  const auto loss = pc::to_host(d_loss.data(), R, st);
  for (int r = 0; r < R; ++r) {
    if (t[r] < 0) {
      CHECK(loss[r] == 0.0f);
      continue;
    }
    double m = -1e300, s = 0.0;
    for (int c = 0; c < V; ++c) m = std::max(m, static_cast<double>(x[r * V + c]));
    for (int c = 0; c < V; ++c) s += std::exp(x[r * V + c] - m);
    CHECK(std::abs(loss[r] - (std::log(s) + m - x[r * V + t[r]])) < 1e-4);
    for (int c = 0; c < V; c += 97) {
      const double want = (std::exp(x[r * V + c] - m) / s - (c == t[r] ? 1.0 : 0.0)) / 36.0;
      REQUIRE(std::abs(g[static_cast<std::size_t>(r) * V + c] - want) < 1e-6);
    }
  }
}

TEST_CASE("GPU fused AdamW: one clipped step equals the formula in double, bf16 copy written", "[cuda][train]") {
  const std::vector<std::size_t> sizes = {300000, 768, 1};
  pc::Stream stream;
  cudaStream_t st = stream.get();
  std::vector<std::vector<float>> w, g;
  std::vector<pc::DeviceArray<float>> dw, dg, dm, dv;
  std::vector<pc::DeviceArray<pc::bf16>> dmodel;
  std::vector<pc::OptimizerTensor> tensors;
  double sq = 0.0;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    w.push_back(float_normals(sizes[t], 10 + t, 0.1f));
    g.push_back(float_normals(sizes[t], 20 + t, 0.01f));
    for (float v : g.back()) sq += static_cast<double>(v) * v;
    dw.push_back(pc::to_device(w.back(), st));
    dg.push_back(pc::to_device(g.back(), st));
    dm.push_back(pc::to_device(std::vector<float>(sizes[t], 0.0f), st));
    dv.push_back(pc::to_device(std::vector<float>(sizes[t], 0.0f), st));
    dmodel.emplace_back(sizes[t]);
    pc::OptimizerTensor x;
    x.master = dw.back().data();
    x.grad = dg.back().data();
    x.m = dm.back().data();
    x.v = dv.back().data();
    x.model = dmodel.back().data();
    x.n = static_cast<std::int64_t>(sizes[t]);
    x.weight_decay = t == 1 ? 0.0f : 0.01f;
    x.bc1 = 0.1f;    // step 1
    x.bc2 = 0.001f;
    tensors.push_back(x);
  }
  const auto chunks = pc::make_optimizer_chunks(tensors);
  auto d_tensors = pc::to_device(tensors, st);
  auto d_chunks = pc::to_device(chunks, st);
  pc::DeviceArray<float> scratch(static_cast<std::size_t>(pc::optimizer_scratch(static_cast<int>(chunks.size()), 3)));
  auto stats = pc::to_device(std::vector<float>(pc::kOptimizerStats, 0.0f), st);
  pc::OptimizerHyper h;
  h.lr = 1e-3f;
  h.clip_norm = 1.0f;
  pc::LaunchCounts counts;
  pc::adamw_step<pc::bf16>(d_tensors.data(), d_chunks.data(), static_cast<int>(chunks.size()), h, scratch.data(), stats.data(), st, counts);
  const auto s = pc::to_host(stats.data(), pc::kOptimizerStats, st);
  const double norm = std::sqrt(sq);
  CHECK(std::abs(s[0] - norm) < 1e-4 * norm);
  const double clip = norm > 1.0 ? 1.0 / norm : 1.0;
  for (std::size_t t = 0; t < sizes.size(); ++t) {
    const auto nw = pc::to_host(dw[t].data(), sizes[t], st);
    const auto nm = pc::to_host(dmodel[t].data(), sizes[t], st);
    for (std::size_t i = 0; i < sizes[t]; i += 7) {
      const double gg = g[t][i] * clip, m = 0.1 * gg, v = 0.001 * gg * gg;
      const double want = w[t][i] - 1e-3 * ((m / 0.1) / (std::sqrt(v / 0.001) + 1e-6) + (t == 1 ? 0.0 : 0.01) * w[t][i]);
      REQUIRE(std::abs(nw[i] - want) < 2e-6);
      REQUIRE(pc::to_float(nm[i]) == pc::to_float(pc::from_float<pc::bf16>(nw[i])));
    }
  }
}
