// The smallest useful pld program: a user's own residual stack (here a toy "layer" on a vector)
// driven by a pld::Controller. Each step asks which layers run and with what scale, skips the
// dropped ones entirely, and reports what it did. Build with the project; run ./pld_minimal.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include <pld/pld.hpp>

// Stand-in for a Transformer layer's residual branch f_l(x).
static std::vector<float> my_branch(const std::vector<float>& x, int layer) {
  std::vector<float> y(x.size());
  for (std::size_t j = 0; j < x.size(); ++j) y[j] = 0.1f * std::tanh(x[j] + 0.01f * static_cast<float>(layer));
  return y;
}

int main() {
  // PLD as in the paper: theta_bar = 0.5, gamma = 0.001, linear depth decay, 12 layers.
  pld::ScheduleSpec spec;
  spec.preset = pld::Preset::pld;
  spec.num_layers = 12;
  pld::Controller controller(pld::make_schedule(spec), pld::GateConfig{/*seed=*/42});

  controller.on_step_end([](const pld::LayerPlan& plan, const pld::StepReport& r, const pld::ControllerStats& s) {
    if (plan.step % 1000 == 0)
      std::printf("step %5lld  theta %.3f  kept %2d/%d  loss %.4f  layer work saved %.1f%%\n",
                  static_cast<long long>(plan.step), plan.theta, plan.num_kept(), plan.num_layers(), r.loss,
                  100.0 * s.layer_work_saved());
  });

  std::vector<float> x(64);
  for (std::int64_t step = 0; step < 5000; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const pld::LayerPlan& plan = controller.begin_step(step);

    for (std::size_t j = 0; j < x.size(); ++j) x[j] = std::sin(0.1f * static_cast<float>(j + step));
    for (int l = 0; l < plan.num_layers(); ++l) {
      if (!plan.kept(l)) continue;  // a dropped layer is the identity: no work at all
      const auto g = static_cast<float>(plan.gate_scale(l));  // 1/p_l, keeps the sum unbiased
      const std::vector<float> f = my_branch(x, l);
      for (std::size_t j = 0; j < x.size(); ++j) x[j] += g * f[j];
    }
    double loss = 0.0;
    for (float v : x) loss += static_cast<double>(v) * v;

    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    controller.end_step({loss / static_cast<double>(x.size()), static_cast<std::int64_t>(x.size()), seconds});
  }

  // A checkpoint would store this text; Controller::restore_state() resumes the same decisions.
  const std::string state = controller.save_state();
  const pld::ControllerStats& s = controller.stats();
  std::printf("done: %lld steps, expected kept %.4f, realised %.4f, layer work saved %.1f%%, state %zu bytes\n",
              static_cast<long long>(s.steps_done), s.mean_expected_kept(), s.mean_realised_kept(),
              100.0 * s.layer_work_saved(), state.size());
  return 0;
}
