// One comparison harness for a layer stack of the shared logic (pld::BasicLayerStack on any
// backend) against a stack of CPU layers in double, shared by the GPU tests
// (tests/cuda/test_cuda_stack.cu), the host emulation (tests/test_cuda_emulated.cpp) and the CPU
// backend (tests/test_cpu_shared_layer.cpp). A case draws a real plan from pld's gate (PLD's depth
// decay at a low theta, per layer or per sample) that drops some layers (or rows) and keeps
// others, random parameters per layer, inputs and the output gradient, all rounded to the storage
// type; the stack under test runs through a callback; the reference runs each layer's forward in
// turn, then each layer's backward from the top (tests/layer/cpu_reference.hpp).
//
// Checked: the output, the input gradient and every kept layer's twelve gradients within the
// storage type's bound for one layer times the number of kept layers a value passes through (the
// stack adds each layer's rounding); a dropped layer's gradients exactly zero.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cpu_reference.hpp"
#include "layer_case.hpp"
#include "pld/gate/gate.hpp"
#include "pld/schedule/presets.hpp"

namespace pld::test {

struct StackCase {
  LayerConfig config;
  int layers = 4, batch = 4, seq = 16;
  bool padding = true;
  pld::Granularity granularity = pld::Granularity::layer;
  std::uint64_t seed = 1;
};

struct StackInputs {
  std::vector<pld::cpu::LayerParams<double>> params;  // per layer, rounded to the storage type
  std::vector<double> x, dy;                          // (B, T, H): input, gradient of the output
  std::vector<std::uint8_t> valid;                    // (B, T) or empty
  pld::LayerPlan plan;
  std::uint64_t dropout_seed = 0;
};

struct StackOutputs {
  std::vector<double> y, dx;
  std::vector<pld::cpu::LayerParams<double>> grads;  // per layer
};

// The first plan from step 1 on that drops at least one layer (per sample: one row of one layer)
// and keeps at least two layers: PLD's linear depth decay at theta = 0.3 (dd_only), Bernoulli.
inline pld::LayerPlan stack_plan(const StackCase& k) {
  pld::ScheduleSpec spec;
  spec.preset = pld::Preset::dd_only;
  spec.num_layers = k.layers;
  spec.theta_bar = 0.3;
  pld::GateConfig gc;
  gc.seed = k.seed;
  gc.granularity = k.granularity;
  const pld::Gate gate(pld::make_schedule(spec), gc);
  for (std::int64_t step = 1; step < 10000; ++step) {
    pld::LayerPlan p = gate.plan(step, true, k.batch);
    int kept = 0, dropped_rows = 0;
    for (int l = 0; l < k.layers; ++l) {
      kept += p.kept(l) ? 1 : 0;
      for (int b = 0; b < (p.per_sample() ? k.batch : 1); ++b) dropped_rows += p.sample_kept(l, b) ? 0 : 1;
    }
    if (kept >= 2 && dropped_rows >= 1) return p;
  }
  FAIL("no plan drops a layer and keeps two in 10000 steps");
  return {};
}

template <class T>
StackInputs make_stack_inputs(const StackCase& k) {
  StackInputs in;
  for (int l = 0; l < k.layers; ++l) {
    LayerCase one;
    one.config = k.config;
    one.batch = k.batch;
    one.seq = k.seq;
    one.padding = k.padding;
    one.seed = k.seed * 131 + static_cast<std::uint64_t>(l);
    LayerInputs li = make_inputs<T>(one);
    in.params.push_back(li.params);
    if (l == 0) {
      in.x = li.x;
      in.dy = li.dy;
      in.valid = li.valid;
    }
  }
  in.plan = stack_plan(k);
  in.dropout_seed = 0xabcdULL + k.seed;
  return in;
}

// Runs `run(const StackInputs&) -> StackOutputs` and checks it against the CPU stack in double.
// Prints "rel-error <label> <storage> stack:<tensor> <value>" per tensor; returns the worst error
// relative to its bound.
template <class T, class Run>
double check_stack_case(const StackCase& k, Run run, const char* label) {
  const LayerConfig& c = k.config;
  const char* storage = TestStorage<T>::name;
  StackInputs in = make_stack_inputs<T>(k);
  std::string decisions;
  for (int l = 0; l < k.layers; ++l) {
    decisions += in.plan.kept(l) ? "K" : "-";
    if (in.plan.per_sample())
      for (int b = 0; b < k.batch; ++b) decisions += in.plan.sample_kept(l, b) ? "1" : "0";
    decisions += " ";
  }
  INFO(label << " stack storage " << storage << " L " << k.layers << " B " << k.batch << " T " << k.seq << " H " << c.hidden
             << " plan step " << in.plan.step << " [" << decisions << "]");
  const std::uint8_t* valid = in.valid.empty() ? nullptr : in.valid.data();

  // Reference: forwards up the stack (keeping each layer's input), then backwards down.
  std::vector<std::vector<double>> xs{in.x};
  std::vector<pld::cpu::LayerParams<double>> g_ref;
  int kept = 0;
  for (int l = 0; l < k.layers; ++l) {
    std::vector<double> y, dx;
    pld::cpu::LayerParams<double> g(c);
    cpu_reference(c, in.params[static_cast<std::size_t>(l)], xs.back(), in.dy, k.batch, k.seq, valid,
                  LayerStep::from_plan(in.plan, l, in.dropout_seed), y, dx, g);
    xs.push_back(y);
    g_ref.push_back(g);
    kept += in.plan.kept(l) ? 1 : 0;
  }
  std::vector<double> d = in.dy;
  for (int l = k.layers - 1; l >= 0; --l) {
    std::vector<double> y, dx;
    cpu_reference(c, in.params[static_cast<std::size_t>(l)], xs[static_cast<std::size_t>(l)], d, k.batch, k.seq, valid,
                  LayerStep::from_plan(in.plan, l, in.dropout_seed), y, dx, g_ref[static_cast<std::size_t>(l)]);
    d = dx;
  }
  StackOutputs out = run(in);
  REQUIRE(out.grads.size() == static_cast<std::size_t>(k.layers));

  const double limit = bound<T>() * kept;
  double worst = 0.0;
  auto compare = [&](const std::vector<double>& got, const std::vector<double>& ref, const std::string& what) {
    worst = std::max(worst, check_tensor(got, ref, limit, label, storage, "stack:" + what) / limit);
  };
  compare(out.y, xs.back(), "y");
  compare(out.dx, d, "dx");
  for (int l = 0; l < k.layers; ++l) {
    auto g = out.grads[static_cast<std::size_t>(l)].tensors();
    auto r = g_ref[static_cast<std::size_t>(l)].tensors();
    for (std::size_t i = 0; i < g.size(); ++i) {
      const auto* gp = static_cast<const double*>(g[i].data);
      const std::vector<double> got(gp, gp + g[i].size);
      if (!in.plan.kept(l)) {
        INFO("dropped layer " << l << " " << r[i].name);
        CHECK(std::all_of(got.begin(), got.end(), [](double v) { return v == 0.0; }));
        continue;
      }
      const auto* rp = static_cast<const double*>(r[i].data);
      compare(got, std::vector<double>(rp, rp + r[i].size), "layer" + std::to_string(l) + "." + r[i].name);
    }
  }
  return worst;
}

}  // namespace pld::test
