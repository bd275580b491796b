// The CUDA layer stack (pld::cuda::LayerStack) on a GPU against a stack of CPU layers in double,
// under real PLD plans per layer and per sample (tests/layer/stack_case.hpp, which the host
// emulation in tests/test_cuda_emulated.cpp runs in CI too), and its arena on the device.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "pld/cuda.hpp"
#include "../layer/stack_case.hpp"

namespace pc = pld::cuda;

namespace {

template <class T>
pld::test::StackOutputs run_gpu_stack(const pld::test::StackCase& k, const pld::test::StackInputs& in) {
  pc::Stream stream;
  cudaStream_t st = stream.get();
  pc::LayerStack<T> stack(k.config, k.layers);
  for (int l = 0; l < k.layers; ++l) {
    pld::cpu::LayerParams<double> p = in.params[static_cast<std::size_t>(l)];
    stack.layer(l).params().upload(p, st);
    stack.layer(l).grads().zero(st);
  }
  stack.reserve(k.batch, k.seq);
  auto x = pc::to_device(pld::test::to_storage<T>(in.x), st);
  auto d = pc::to_device(pld::test::to_storage<T>(in.dy), st);
  pc::DeviceArray<std::uint8_t> valid;
  if (!in.valid.empty()) valid = pc::to_device(in.valid, st);
  stack.forward(x.data(), k.batch, k.seq, in.valid.empty() ? nullptr : valid.data(), in.plan, in.dropout_seed, st);
  stack.backward(d.data(), st);
  stream.synchronize();
  CHECK(stack.allocations() == 1);  // reserve() sized it; the step allocated nothing
  pld::test::StackOutputs out;
  out.y = pld::test::from_storage(pc::to_host(x.data(), in.x.size(), st));
  out.dx = pld::test::from_storage(pc::to_host(d.data(), in.dy.size(), st));
  for (int l = 0; l < k.layers; ++l) {
    out.grads.emplace_back(k.config);
    stack.layer(l).grads().download(out.grads.back(), st);
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA layer stack matches a stack of CPU layers under PLD plans", "[cuda][stack]", float, pc::bf16, pc::fp16) {
  pld::test::StackCase k;
  k.config = pld::test::test_config(64, 4);
  k.layers = 5;
  k.seq = 24;
  SECTION("per layer") {}
  SECTION("per sample") { k.granularity = pld::Granularity::sample; }
  pld::test::check_stack_case<TestType>(k, [&](const pld::test::StackInputs& in) { return run_gpu_stack<TestType>(k, in); }, "gpu");
}

TEST_CASE("CUDA stack AdamW: a dropped layer is left alone, the others take one clipped AdamW step (double)", "[cuda][stack][train]") {
  const pld::LayerConfig c = pld::test::test_config(64, 4);
  const int L = 3, B = 2, T = 16;
  pc::Stream stream;
  cudaStream_t st = stream.get();
  pc::LayerStack<float> stack(c, L);
  pc::OptimizerHyper h;
  h.lr = 1e-2f;
  h.clip_norm = 0.5f;
  const float decay = 0.01f;
  pc::StackAdamW<float> opt(stack, h, decay);
  std::vector<pld::cpu::LayerParams<double>> w0;
  for (int l = 0; l < L; ++l) {
    pld::test::LayerCase one;
    one.config = c;
    one.seed = 40 + static_cast<std::uint64_t>(l);
    w0.push_back(pld::test::make_inputs<float>(one).params);
    opt.upload(l, w0.back(), st);
    stack.layer(l).grads().zero(st);
  }
  pld::LayerPlan plan;  // layer 1 dropped
  plan.step = 1;
  plan.keep = {1, 0, 1};
  plan.prob = {1.0, 0.8, 0.6};
  plan.scale = {1.0, 0.0, 1.0 / 0.6};
  stack.reserve(B, T);
  const std::size_t n = static_cast<std::size_t>(B) * T * c.hidden;
  auto x = pc::to_device(pld::test::to_storage<float>(pld::test::normals(n, 5, 1, 1.0)), st);
  auto d = pc::to_device(pld::test::to_storage<float>(pld::test::normals(n, 5, 2, 1.0)), st);
  stack.forward(x.data(), B, T, nullptr, plan, 77, st);
  stack.backward(d.data(), st);
  std::vector<pld::cpu::LayerParams<double>> g;
  double sq = 0.0;
  for (int l = 0; l < L; ++l) {
    g.emplace_back(c);
    stack.layer(l).grads().download(g.back(), st);
    for (const auto& t : g.back().tensors())
      for (std::size_t i = 0; i < t.size; ++i) sq += static_cast<const double*>(t.data)[i] * static_cast<const double*>(t.data)[i];
  }
  opt.step(plan, /*skip_dropped=*/true, st);
  const double norm = std::sqrt(sq);
  const auto stats = opt.stats(st);
  CHECK(std::abs(stats[0] - norm) <= 1e-5 * norm);
  CHECK(stats[1] == 0.0f);
  const double clip = norm > 0.5 ? 0.5 / norm : 1.0;
  INFO("gradient norm " << norm);
  for (int l = 0; l < L; ++l) {
    pld::cpu::LayerParams<double> w(c), model(c), m(c), v(c), g_after(c);
    opt.download(l, w, st);
    stack.layer(l).params().download(model, st);
    opt.first_moments(l).download(m, st);
    opt.second_moments(l).download(v, st);
    stack.layer(l).grads().download(g_after, st);
    const auto w_t = w.tensors(), model_t = model.tensors(), m_t = m.tensors(), v_t = v.tensors(), g_t = g[static_cast<std::size_t>(l)].tensors(),
               w0_t = w0[static_cast<std::size_t>(l)].tensors(), ga_t = g_after.tensors();
    for (std::size_t k = 0; k < w_t.size(); ++k) {
      INFO("layer " << l << " " << w_t[k].name);
      const auto* pw = static_cast<const double*>(w_t[k].data);
      const auto* pm = static_cast<const double*>(model_t[k].data);
      const auto* p0 = static_cast<const double*>(w0_t[k].data);
      const auto* pg = static_cast<const double*>(g_t[k].data);
      const auto* mm = static_cast<const double*>(m_t[k].data);
      const auto* vv = static_cast<const double*>(v_t[k].data);
      const auto* ga = static_cast<const double*>(ga_t[k].data);
      const bool decays = w_t[k].name.find("bias") == std::string::npos && w_t[k].name.find("norm") == std::string::npos;
      double worst = 0.0;
      bool untouched = true, zero_grad = true;
      for (std::size_t i = 0; i < w_t[k].size; ++i) {
        const double w_in = static_cast<float>(p0[i]);
        untouched = untouched && pw[i] == w_in && mm[i] == 0.0 && vv[i] == 0.0 && pm[i] == w_in;
        zero_grad = zero_grad && ga[i] == 0.0;
        const double gg = pg[i] * clip, m1 = (1 - 0.9) * gg, v1 = (1 - 0.999) * gg * gg;
        const double want = w_in - 1e-2 * ((m1 / (1 - 0.9)) / (std::sqrt(v1 / (1 - 0.999)) + 1e-6) + (decays ? decay : 0.0) * w_in);
        worst = std::max(worst, std::abs(pw[i] - want));
        if (pm[i] != pw[i]) worst = 1.0;  // the storage copy is the new master (fp32 storage)
      }
      if (l == 1) {
        CHECK(untouched);  // dropped: weights, storage copy and moments as uploaded
      } else {
        CHECK(worst < 2e-6);
      }
      CHECK(zero_grad);  // updated layers' gradients zeroed; the dropped layer's were never written
    }
  }
  std::vector<std::int64_t> want_steps;
  for (int l = 0; l < L; ++l)
    for (int k = 0; k < pc::kNumParams; ++k) want_steps.push_back(l == 1 ? 0 : 1);
  CHECK(opt.steps() == want_steps);
  CHECK(stack.allocations() == 1);
}
