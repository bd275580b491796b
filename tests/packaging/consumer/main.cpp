// A user's program: includes the umbrella header and runs one step of the controller.
#include <cstdio>

#include <pld/pld.hpp>

int main() {
  pld::ScheduleSpec spec;
  spec.num_layers = 12;
  pld::Controller controller(pld::make_schedule(spec), pld::GateConfig{7});
  const pld::LayerPlan& plan = controller.begin_step(5000);
  controller.end_step({});
  std::printf("kept %d of %d layers\n", plan.num_kept(), plan.num_layers());
  return 0;
}
