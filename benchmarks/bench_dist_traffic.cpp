// What data parallelism with PLD sends, against no dropping, in one run: `mpirun -np 2` of a
// stack of L pld::cpu layers (BERT-mini width, H = 256, T = 128, 8 sequences per rank) plus a
// shared bucket the size of a 8192 x 256 embedding, trained for --steps steps under the `none`
// plan and then the `pld` plan (theta_bar 0.5, gamma 0.02), every gradient all-reduced through
// pld::dist::GradientReducer. Prints per-step bytes and time for both and the ratio of layer
// bytes (pld / none) beside PLD's realised kept fraction of layers: they must agree (the goal:
// within 1%), since a dropped layer sends nothing. benchmarks/dist_traffic.sh runs it.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "pld/cpu.hpp"
#include "pld/dist/mpi.hpp"
#include "pld/dist/reducer.hpp"

int main(int argc, char** argv) {
  pld::dist::MpiSession mpi(&argc, &argv);
  int steps = 100, layers = 12;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--steps") steps = std::atoi(argv[i + 1]);
    else if (a == "--layers") layers = std::atoi(argv[i + 1]);
  }
  pld::dist::MpiCommunicator comm;
  const int B = 8, T = 128, H = 256;
  pld::LayerConfig cfg;
  cfg.hidden = H;
  cfg.heads = 4;
  std::vector<std::unique_ptr<pld::cpu::PreLnLayer<float>>> stack;
  for (int l = 0; l < layers; ++l) {
    stack.push_back(std::make_unique<pld::cpu::PreLnLayer<float>>(cfg, pld::cpu::Precision::native));
    stack.back()->params().init_normal(7 + static_cast<std::uint64_t>(l), 0.05);
  }
  std::vector<float> shared(8192 * static_cast<std::size_t>(H), 1e-3f);
  std::vector<float> x(static_cast<std::size_t>(B) * T * H), dy(x.size());
  struct Result {
    double bytes = 0, seconds = 0, kept = 0;
  };
  auto run = [&](pld::Preset preset) {
    pld::ScheduleSpec spec;
    spec.preset = preset;
    spec.num_layers = layers;
    if (preset == pld::Preset::pld) spec.gamma = 0.02;
    const pld::Gate gate(pld::make_schedule(spec), {11});
    pld::dist::GradientReducer reducer(comm, layers);
    for (int l = 0; l < layers; ++l)
      for (auto& t : stack[static_cast<std::size_t>(l)]->grads().tensors()) reducer.add(l, static_cast<float*>(t.data), t.size);
    reducer.add(-1, shared.data(), shared.size());
    Result r;
    std::uint64_t layer_bytes = 0;
    for (int t = 0; t < steps; ++t) {
      const pld::LayerPlan plan = gate.plan(t);
      const auto t0 = std::chrono::steady_clock::now();
      for (auto& l : stack) l->grads().zero();
      for (std::size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u + static_cast<unsigned>(t)) % 1000) * 1e-3f - 0.5f;
      std::fill(dy.begin(), dy.end(), 1e-3f);
      reducer.begin_step(plan);
      for (int l = 0; l < layers; ++l)
        stack[static_cast<std::size_t>(l)]->forward(x.data(), x.data(), B, T, nullptr, pld::LayerStep::from_plan(plan, l, 11));
      for (int l = layers - 1; l >= 0; --l) {
        stack[static_cast<std::size_t>(l)]->backward(dy.data(), dy.data());
        reducer.layer_done(l);
      }
      const pld::dist::StepTraffic sent = reducer.finish();
      r.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      r.bytes += static_cast<double>(sent.bytes);
      layer_bytes += sent.bytes - shared.size() * sizeof(float);
      r.kept += static_cast<double>(plan.num_kept()) / layers;
    }
    r.kept /= steps;
    r.bytes /= steps;
    r.seconds /= steps;
    return std::make_pair(r, static_cast<double>(layer_bytes) / steps);
  };
  const auto [none, none_layer] = run(pld::Preset::none);
  const auto [pld_run, pld_layer] = run(pld::Preset::pld);
  if (comm.rank() == 0) {
    std::printf("ranks %d, layers %d (H %d, T %d, %d sequences per rank), %d steps each, products %s\n", comm.size(), layers, H, T, B, steps,
                stack[0]->gemm().last_implementation().c_str());
    std::printf("| plan | MB all-reduced per step | of which layers | ms per step | kept layer fraction |\n|---|---:|---:|---:|---:|\n");
    std::printf("| none | %.2f | %.2f | %.1f | %.3f |\n", none.bytes / 1e6, none_layer / 1e6, none.seconds * 1e3, none.kept);
    std::printf("| pld | %.2f | %.2f | %.1f | %.3f |\n", pld_run.bytes / 1e6, pld_layer / 1e6, pld_run.seconds * 1e3, pld_run.kept);
    const double ratio = pld_layer / none_layer;
    std::printf("layer bytes pld / none %.4f vs kept fraction %.4f: %+.2f%%; step time none / pld %.2fx\n", ratio, pld_run.kept,
                100.0 * (ratio / pld_run.kept - 1.0), none.seconds / pld_run.seconds);
  }
  return 0;
}
