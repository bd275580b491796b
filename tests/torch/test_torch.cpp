// pld::libtorch against pld::cpu and against LibTorch's own machinery: the encoder layer module
// equals pld::cpu::PreLnLayer<double> (forward, input gradient, every parameter gradient; Pre-LN
// and Post-LN, with padding), a gated stack in per-layer and per-sample mode equals pld::cpu's
// stack under the same plans, dropped layers get no gradient and no optimizer change when
// released, and checkpoints resume the same plans and refuse bad input with pld::Error.
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <pld/cpu.hpp>
#include <pld/torch.hpp>

// Debian's LibTorch brings glog, whose CHECK aborts the process; Catch's CHECK must win.
#undef CHECK
#include <catch2/catch.hpp>

namespace {

using pld::libtorch::EncoderLayer;

pld::LayerConfig small_config(pld::NormPosition norm) {
  pld::LayerConfig c;
  c.hidden = 16;
  c.heads = 2;
  c.ffn = 24;
  c.attention_dropout = 0.0f;
  c.hidden_dropout = 0.0f;
  c.norm = norm;
  return c;
}

void fill_random(pld::cpu::LayerParams<double>& p, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n(0.0, 0.3);
  for (auto& t : p.tensors()) {
    auto* d = static_cast<double*>(t.data);
    for (std::size_t i = 0; i < t.size; ++i) d[i] = n(rng);
  }
  // LayerNorm weights near 1, as trained ones are.
  for (auto* w : {&p.norm1_weight, &p.norm2_weight})
    for (double& v : *w) v += 1.0;
}

at::Tensor random_tensor(std::vector<std::int64_t> shape, std::uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  return at::randn(shape, gen, torch::TensorOptions().dtype(torch::kDouble));
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.detach().contiguous().to(torch::kDouble);
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// The padding mask of `valid` (1 = token) as LibTorch's key padding mask (true = padding).
at::Tensor padding_mask(const std::vector<std::uint8_t>& valid, int B, int T) {
  std::vector<std::uint8_t> pad(valid.size());
  for (std::size_t i = 0; i < valid.size(); ++i) pad[i] = valid[i] ? 0 : 1;
  return torch::tensor(at::ArrayRef<std::uint8_t>(pad), torch::kUInt8).reshape({B, T}).to(torch::kBool);
}

std::vector<std::uint8_t> valid_with_padding(int B, int T) {
  std::vector<std::uint8_t> valid(static_cast<std::size_t>(B * T), 1);
  for (int t = T - 2; t < T; ++t) valid[static_cast<std::size_t>(1 * T + t)] = 0;  // row 1: 2 padding tokens
  valid[static_cast<std::size_t>(2 * T + T - 1)] = 0;                              // row 2: 1
  return valid;
}

}  // namespace

TEST_CASE("libtorch EncoderLayer equals pld::cpu::PreLnLayer in double: forward and every gradient", "[torch]") {
  for (pld::NormPosition norm : {pld::NormPosition::pre, pld::NormPosition::post}) {
    DYNAMIC_SECTION("norm " << pld::to_string(norm)) {
      const pld::LayerConfig cfg = small_config(norm);
      const int B = 3, T = 5, H = cfg.hidden;
      const double g = 1.25;  // a kept layer's gate scale 1/p_l
      pld::cpu::PreLnLayer<double> cpu_layer(cfg);
      fill_random(cpu_layer.params(), 7);

      torch::manual_seed(0);
      EncoderLayer layer(cfg);
      layer->to(torch::kDouble);
      pld::libtorch::load_tensors(*layer, cpu_layer.params().tensors(), torch::kDouble);

      const std::vector<std::uint8_t> valid = valid_with_padding(B, T);
      const at::Tensor x0 = random_tensor({B, T, H}, 11);
      const at::Tensor dy = random_tensor({B, T, H}, 12);

      // pld::cpu
      std::vector<double> x = to_vector(x0), y(x.size()), dx(x.size());
      pld::LayerStep step;
      step.scale = g;
      cpu_layer.forward(x.data(), y.data(), B, T, valid.data(), step);
      std::vector<double> dyv = to_vector(dy);
      cpu_layer.backward(dyv.data(), dx.data());

      // LibTorch, autograd
      at::Tensor xt = x0.clone().requires_grad_(true);
      at::Tensor yt = layer->forward(xt, padding_mask(valid, B, T), g);
      yt.backward(dy);

      CHECK(max_abs_diff(to_vector(yt), y) < 1e-11);
      CHECK(max_abs_diff(to_vector(xt.grad()), dx) < 1e-11);
      auto params = layer->named_parameters();
      int compared = 0;
      for (auto& t : cpu_layer.grads().tensors()) {
        INFO(t.name);
        const at::Tensor* p = params.find(t.name);
        REQUIRE(p != nullptr);
        REQUIRE(p->grad().defined());
        const auto* d = static_cast<const double*>(t.data);
        CHECK(max_abs_diff(to_vector(p->grad()), std::vector<double>(d, d + t.size)) < 1e-10);
        ++compared;
      }
      CHECK(compared == pld::kLayerTensors);
      CHECK(params.size() == static_cast<std::size_t>(pld::kLayerTensors));  // no stray parameters
    }
  }
}

TEST_CASE("libtorch gated stack equals pld::cpu's stack under the same plans, per layer and per sample", "[torch]") {
  const pld::LayerConfig cfg = small_config(pld::NormPosition::pre);
  const int L = 4, B = 6, T = 4, H = cfg.hidden;
  for (auto granularity : {pld::Granularity::layer, pld::Granularity::sample}) {
    DYNAMIC_SECTION("granularity " << pld::to_string(granularity)) {
      pld::ScheduleSpec spec;
      spec.num_layers = L;
      spec.theta_bar = 0.3;
      spec.gamma = 0.5;  // decays fast: most steps below drop something
      pld::GateConfig gc;
      gc.seed = 5;
      gc.granularity = granularity;
      pld::Controller ctl(pld::make_schedule(spec), gc);

      std::vector<std::unique_ptr<pld::cpu::PreLnLayer<double>>> cpu_layers;
      std::vector<EncoderLayer> layers;
      torch::manual_seed(0);
      for (int i = 0; i < L; ++i) {
        cpu_layers.push_back(std::make_unique<pld::cpu::PreLnLayer<double>>(cfg));
        fill_random(cpu_layers.back()->params(), 100 + static_cast<std::uint64_t>(i));
        layers.emplace_back(cfg);
        layers.back()->to(torch::kDouble);
        pld::libtorch::load_tensors(*layers.back(), cpu_layers.back()->params().tensors(), torch::kDouble);
      }
      int partial_steps = 0, dropped_layers = 0;
      for (std::int64_t s = 0; s < 8; ++s) {
        const pld::LayerPlan& plan = ctl.begin_step(s, granularity == pld::Granularity::sample ? B : 0);
        for (int i = 0; i < L; ++i) {
          dropped_layers += plan.kept(i) ? 0 : 1;
          if (plan.per_sample() && plan.kept(i) && static_cast<int>(plan.kept_rows(i).size()) < B) ++partial_steps;
        }
        const at::Tensor x0 = random_tensor({B, T, H}, 20 + static_cast<std::uint64_t>(s));
        const at::Tensor dy = random_tensor({B, T, H}, 40 + static_cast<std::uint64_t>(s));

        // pld::cpu: each kept layer forward on the whole batch (per-sample: the step's rows), then backward.
        std::vector<std::vector<double>> acts(L + 1, to_vector(x0));
        for (int i = 0; i < L; ++i) {
          acts[i + 1] = acts[i];
          if (!plan.kept(i)) continue;
          cpu_layers[i]->grads().zero();
          cpu_layers[i]->forward(acts[i].data(), acts[i + 1].data(), B, T, nullptr, pld::LayerStep::from_plan(plan, i, 0));
        }
        std::vector<double> grad = to_vector(dy);
        for (int i = L - 1; i >= 0; --i)
          if (plan.kept(i)) cpu_layers[i]->backward(grad.data(), grad.data());

        for (auto& l : layers) l->zero_grad();
        at::Tensor xt = x0.clone().requires_grad_(true);
        at::Tensor yt = pld::libtorch::forward_stack(plan, layers, xt);
        yt.backward(dy);

        INFO("step " << s);
        CHECK(max_abs_diff(to_vector(yt), acts[L]) < 1e-11);
        CHECK(max_abs_diff(to_vector(xt.grad()), grad) < 1e-11);
        for (int i = 0; i < L; ++i) {
          auto params = layers[i]->named_parameters();
          for (auto& t : cpu_layers[i]->grads().tensors()) {
            const at::Tensor& p = *params.find(t.name);
            if (!plan.kept(i)) {
              // Never part of the graph this step: LibTorch's zero_grad() left zeros (or nothing).
              CHECK((!p.grad().defined() || p.grad().abs().max().item<double>() == 0.0));
              continue;
            }
            const auto* d = static_cast<const double*>(t.data);
            CHECK(max_abs_diff(to_vector(p.grad()), std::vector<double>(d, d + t.size)) < 1e-10);
          }
        }
        ctl.end_step();
      }
      // The plans exercised the skip (per layer) and the row gather (per sample).
      if (granularity == pld::Granularity::layer) CHECK(dropped_layers > 0);
      else CHECK(partial_steps > 0);
    }
  }
}

TEST_CASE("libtorch per-sample forward computes only the kept rows and passes the others through", "[torch]") {
  pld::LayerPlan plan;
  plan.keep = {1, 0, 1};
  plan.scale = {2.0, 0.0, 4.0};
  plan.prob = {0.5, 0.5, 0.25};
  plan.batch = 4;
  plan.sample_keep = {1, 0, 1, 0,   // layer 0: rows 0 and 2
                      0, 0, 0, 0,   // layer 1: none
                      1, 1, 1, 1};  // layer 2: all
  std::vector<std::pair<int, std::int64_t>> calls;
  const at::Tensor x = torch::arange(8, torch::kDouble).reshape({4, 2});
  const at::Tensor y = pld::libtorch::forward_layers(plan, x, [&](const at::Tensor& h, const pld::libtorch::LayerCall& c) {
    calls.emplace_back(c.layer, h.size(0));
    return h * c.scale;
  });
  REQUIRE(calls == std::vector<std::pair<int, std::int64_t>>{{0, 2}, {2, 4}});
  // rows 0 and 2 scaled by 2 then 4; rows 1 and 3 only by 4.
  const at::Tensor expect = x * torch::tensor({8.0, 4.0, 8.0, 4.0}, torch::kDouble).unsqueeze(1);
  CHECK(torch::equal(y, expect));
}

TEST_CASE("libtorch released dropped layers: no gradient, and AdamW and SGD leave weights and state alone", "[torch]") {
  const pld::LayerConfig cfg = small_config(pld::NormPosition::pre);
  torch::manual_seed(3);
  torch::nn::ModuleList stack;
  for (int i = 0; i < 3; ++i) stack->push_back(EncoderLayer(cfg));
  std::vector<EncoderLayer> typed;
  for (int i = 0; i < 3; ++i) typed.push_back(EncoderLayer(std::dynamic_pointer_cast<pld::libtorch::EncoderLayerImpl>(stack[i])));

  pld::LayerPlan plan;
  plan.keep = {1, 0, 1};
  plan.scale = {1.0, 0.0, 1.0};
  plan.prob = {1.0, 0.5, 1.0};

  for (const std::string opt_name : {"adamw", "sgd"}) {
    DYNAMIC_SECTION(opt_name) {
      std::unique_ptr<torch::optim::Optimizer> opt;
      if (opt_name == "adamw")
        opt = std::make_unique<torch::optim::AdamW>(stack->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
      else
        opt = std::make_unique<torch::optim::SGD>(stack->parameters(), torch::optim::SGDOptions(1e-2).momentum(0.9).weight_decay(0.1));
      // One full step first, so every layer has optimizer state (moments) that a wrong step would change.
      pld::LayerPlan all = plan;
      all.keep = {1, 1, 1};
      for (const pld::LayerPlan* p : {&all, &plan}) {
        opt->zero_grad();
        const at::Tensor x = torch::randn({2, 3, cfg.hidden});
        pld::libtorch::forward_stack(*p, typed, x).pow(2).mean().backward();
        if (p == &plan) {
          for (auto& w : stack[1]->parameters()) CHECK((!w.grad().defined() || w.grad().abs().max().item<float>() == 0.0f));
          CHECK(pld::libtorch::release_dropped_grads(plan, stack) == stack[1]->parameters().size());
          for (auto& w : stack[1]->parameters()) CHECK(!w.grad().defined());
        }
        std::vector<at::Tensor> before;
        for (auto& w : stack->parameters()) before.push_back(w.detach().clone());
        std::vector<std::vector<at::Tensor>> state_before;
        for (auto& w : stack[1]->parameters()) {
          if (p != &plan) break;  // no optimizer state before the first step
          std::vector<at::Tensor> st;
          auto it = opt->state().find(c10::guts::to_string(w.unsafeGetTensorImpl()));
          REQUIRE(it != opt->state().end());
          if (opt_name == "adamw") {
            auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
            st = {s.exp_avg().clone(), s.exp_avg_sq().clone(), torch::tensor(s.step())};
          } else {
            auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
            st = {s.momentum_buffer().clone()};
          }
          state_before.push_back(st);
        }
        opt->step();
        if (p != &plan) continue;
        const auto after = stack->parameters();
        std::size_t k = 0, moved_kept = 0;
        for (int i = 0; i < 3; ++i)
          for (std::size_t j = 0; j < stack[i]->parameters().size(); ++j, ++k) {
            const bool same = torch::equal(after[k], before[k]);
            if (i == 1) CHECK(same);
            else moved_kept += same ? 0 : 1;
          }
        CHECK(moved_kept > 0);
        std::size_t w = 0;
        for (auto& p1 : stack[1]->parameters()) {
          auto it = opt->state().find(c10::guts::to_string(p1.unsafeGetTensorImpl()));
          if (opt_name == "adamw") {
            auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
            CHECK(torch::equal(s.exp_avg(), state_before[w][0]));
            CHECK(torch::equal(s.exp_avg_sq(), state_before[w][1]));
            CHECK(s.step() == state_before[w][2].item<std::int64_t>());
          } else {
            auto& s = static_cast<torch::optim::SGDParamState&>(*it->second);
            CHECK(torch::equal(s.momentum_buffer(), state_before[w][0]));
          }
          ++w;
        }
      }
    }
  }
}

namespace {

struct ScratchDir {
  std::filesystem::path path;
  ScratchDir() {
    path = std::filesystem::temp_directory_path() / ("pld_torch_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

pld::Controller make_controller(std::uint64_t seed = 9, double gamma = 0.2) {
  pld::ScheduleSpec spec;
  spec.num_layers = 3;
  spec.gamma = gamma;
  return pld::Controller(pld::make_schedule(spec), pld::GateConfig{seed});
}

}  // namespace

TEST_CASE("libtorch checkpoints resume the same plans and refuse bad input with pld::Error", "[torch]") {
  ScratchDir dir;
  const pld::LayerConfig cfg = small_config(pld::NormPosition::pre);
  torch::manual_seed(1);
  torch::nn::ModuleList model;
  for (int i = 0; i < 3; ++i) model->push_back(EncoderLayer(cfg));
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1e-3));
  pld::Controller ctl = make_controller();
  for (std::int64_t s = 0; s < 5; ++s) {
    ctl.begin_step(s);
    ctl.end_step({1.0, 10, 0.01});
  }
  pld::libtorch::CheckpointCounters counters;
  counters.values["next_step"] = 5;
  counters.values["data_position"] = 1234;
  const std::string path = dir.file("ckpt.pt");
  pld::libtorch::save_checkpoint(path, *model, opt, ctl, counters);
  REQUIRE(std::filesystem::exists(path));
  CHECK(!std::filesystem::exists(path + ".tmp"));

  SECTION("a resumed controller repeats the plans and the statistics") {
    torch::manual_seed(2);  // other initial weights, overwritten by the load
    torch::nn::ModuleList model2;
    for (int i = 0; i < 3; ++i) model2->push_back(EncoderLayer(cfg));
    torch::optim::AdamW opt2(model2->parameters(), torch::optim::AdamWOptions(1e-3));
    pld::Controller ctl2 = make_controller();
    pld::libtorch::CheckpointCounters got;
    got.values["next_step"] = 0;
    got.values["data_position"] = 0;
    pld::libtorch::load_checkpoint(path, *model2, opt2, ctl2, &got);
    CHECK(got.values["next_step"] == 5);
    CHECK(got.values["data_position"] == 1234);
    const auto a = model->parameters(), b = model2->parameters();
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) CHECK(torch::equal(a[i], b[i]));
    CHECK(ctl2.save_state() == ctl.save_state());
    for (std::int64_t s = 5; s < 40; ++s) {
      const std::vector<std::uint8_t> k1 = ctl.begin_step(s).keep, k2 = ctl2.begin_step(s).keep;
      CHECK(k1 == k2);
      ctl.end_step();
      ctl2.end_step();
    }
  }
  SECTION("the controller state in an archive of the user's own") {
    torch::serialize::OutputArchive out;
    pld::libtorch::save_controller(out, ctl);
    out.write("something_else", c10::IValue(std::int64_t{3}));
    out.save_to(dir.file("mine.pt"));
    torch::serialize::InputArchive in;
    in.load_from(dir.file("mine.pt"));
    pld::Controller c2 = make_controller();
    pld::libtorch::restore_controller(in, c2);
    CHECK(c2.save_state() == ctl.save_state());
    CHECK_THROWS_AS(pld::libtorch::restore_controller(in, c2, "missing_key"), pld::Error);
    CHECK_THROWS_WITH(pld::libtorch::restore_controller(in, c2, "something_else"), Catch::Contains("not a pld controller state"));
  }
  SECTION("bad input: each a pld::Error, the controller unchanged") {
    torch::nn::ModuleList model2;
    for (int i = 0; i < 3; ++i) model2->push_back(EncoderLayer(cfg));
    torch::optim::AdamW opt2(model2->parameters(), torch::optim::AdamWOptions(1e-3));
    pld::Controller fresh = make_controller();
    const std::string fresh_state = fresh.save_state();

    CHECK_THROWS_WITH(pld::libtorch::load_checkpoint(dir.file("nope.pt"), *model2, opt2, fresh), Catch::Contains("does not exist"));
    {
      std::ofstream(dir.file("garbage.pt")) << "not an archive at all";
    }
    CHECK_THROWS_AS(pld::libtorch::load_checkpoint(dir.file("garbage.pt"), *model2, opt2, fresh), pld::Error);
    CHECK_THROWS_AS(pld::libtorch::load_checkpoint(dir.path.string(), *model2, opt2, fresh), pld::Error);

    // Another gate seed: the state does not belong to this controller.
    pld::Controller other = make_controller(/*seed=*/10);
    CHECK_THROWS_AS(pld::libtorch::load_checkpoint(path, *model2, opt2, other), pld::Error);

    // An edited controller state inside a valid archive: the checksum catches it.
    std::string state = ctl.save_state();
    const auto pos = state.find("training 1");
    REQUIRE(pos != std::string::npos);
    state.replace(pos, 10, "training 0");
    torch::serialize::OutputArchive out;
    out.write(pld::libtorch::kControllerKey, c10::IValue(state));
    out.save_to(dir.file("edited.pt"));
    torch::serialize::InputArchive in;
    in.load_from(dir.file("edited.pt"));
    CHECK_THROWS_AS(pld::libtorch::restore_controller(in, fresh), pld::Error);

    // A model of another width: LibTorch's own load would take the stored tensors as they are.
    pld::LayerConfig wide = cfg;
    wide.hidden = 32;
    torch::nn::ModuleList model3;
    for (int i = 0; i < 3; ++i) model3->push_back(EncoderLayer(wide));
    torch::optim::AdamW opt3(model3->parameters(), torch::optim::AdamWOptions(1e-3));
    const at::Tensor w_before = model3->parameters()[0].clone();
    CHECK_THROWS_WITH(pld::libtorch::load_checkpoint(path, *model3, opt3, fresh), Catch::Contains("another model configuration"));
    CHECK(torch::equal(model3->parameters()[0], w_before));

    // A checkpoint without the counter asked for.
    pld::libtorch::CheckpointCounters want;
    want.values["not_saved"] = 0;
    CHECK_THROWS_WITH(pld::libtorch::load_checkpoint(path, *model2, opt2, fresh, &want), Catch::Contains("no counter 'not_saved'"));

    CHECK(fresh.save_state() == fresh_state);
    CHECK(other.save_state() == make_controller(10).save_state());
  }
}

TEST_CASE("libtorch misuse is a pld::Error", "[torch]") {
  const pld::LayerConfig cfg = small_config(pld::NormPosition::pre);
  std::vector<EncoderLayer> layers{EncoderLayer(cfg), EncoderLayer(cfg)};
  pld::LayerPlan plan;
  plan.keep = {1, 1, 1};
  plan.scale = {1, 1, 1};
  plan.prob = {1, 1, 1};
  const at::Tensor x = torch::randn({2, 3, cfg.hidden});
  CHECK_THROWS_WITH(pld::libtorch::forward_stack(plan, layers, x), Catch::Contains("plan has 3 layers, the stack 2"));
  plan.batch = 5;
  plan.sample_keep.assign(15, 1);
  CHECK_THROWS_WITH(pld::libtorch::forward_layers(plan, x, [](const at::Tensor& h, const pld::libtorch::LayerCall&) { return h; }),
                    Catch::Contains("batch of 5 rows"));
  plan.batch = 0;
  CHECK_THROWS_WITH(pld::libtorch::forward_layers(plan, x, [](const at::Tensor& h, const pld::libtorch::LayerCall&) { return h.sum(); }),
                    Catch::Contains("another shape"));
  CHECK_THROWS_WITH(layers[0]->forward(torch::randn({2, 3, cfg.hidden + 1})), Catch::Contains("input must be"));
  CHECK_THROWS_WITH(layers[0]->forward(x, torch::zeros({2, 4}, torch::kBool)), Catch::Contains("key padding mask"));
  pld::cpu::LayerParams<float> wrong(small_config(pld::NormPosition::pre));
  auto tensors = wrong.tensors();
  tensors[0].name = "self_attn.no_such_weight";
  CHECK_THROWS_WITH(pld::libtorch::load_tensors(*layers[0], tensors, torch::kFloat), Catch::Contains("no parameter 'self_attn.no_such_weight'"));
  pld::LayerConfig bigger = cfg;
  bigger.hidden = 32;
  pld::cpu::LayerParams<float> other(bigger);
  CHECK_THROWS_WITH(pld::libtorch::load_tensors(*layers[0], other.tensors(), torch::kFloat), Catch::Contains("in the module but"));
}
