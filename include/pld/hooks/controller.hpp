// Controller: the one object a training loop talks to. Each optimizer step the loop calls
// begin_step(t), runs its layers as the returned LayerPlan says, and calls end_step with what it
// measured. The controller keeps statistics, notifies observers, switches between training and
// evaluation, and saves/restores its state so a resumed run makes exactly the same decisions.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pld/core/error.hpp"
#include "pld/gate/gate.hpp"
#include "pld/gate/layer_plan.hpp"
#include "pld/hooks/state.hpp"
#include "pld/hooks/stats.hpp"
#include "pld/schedule/schedule.hpp"

namespace pld {

// What the loop measured for one step. Every field is optional.
struct StepReport {
  double loss = std::numeric_limits<double>::quiet_NaN();
  std::int64_t tokens = 0;
  double seconds = 0.0;
};

class Controller {
 public:
  using ObserverId = int;
  using BeginObserver = std::function<void(const LayerPlan&, const ControllerStats&)>;
  using EndObserver = std::function<void(const LayerPlan&, const StepReport&, const ControllerStats&)>;

  explicit Controller(Schedule schedule, GateConfig gate = {}) : gate_(schedule, gate) {
    stats_.num_layers = schedule.num_layers();
  }

  // A controller configured and positioned exactly as the one that wrote `state`.
  static Controller from_state(std::string_view state) {
    ControllerState st = parse_state(state);
    Controller c(st.schedule, st.gate);
    c.training_ = st.training;
    c.stats_ = st.stats;
    return c;
  }

  // Starts step `step` (>= 0) and returns its plan, valid until the next begin_step. `batch` is
  // the number of rows, needed in per-sample mode. Steps need not be consecutive: the plan is a
  // pure function of (seed, step).
  const LayerPlan& begin_step(std::int64_t step, int batch = 0) {
    if (open_)
      detail::throw_error("begin_step(", step, ") while step ", plan_.step,
                          " is still open: call end_step first");
    gate_.plan(step, plan_, training_, batch);
    open_ = true;
    stats_.step = step;
    stats_.theta = plan_.theta;
    stats_.layers_kept = plan_.num_kept();
    stats_.expected_kept_fraction = plan_.expected_kept_fraction();
    stats_.realised_kept_fraction = plan_.kept_fraction();
    for (auto& o : begin_observers_) o.second(plan_, stats_);
    return plan_;
  }

  // Ends the open step. In training mode its work, tokens, time and loss enter the totals.
  void end_step(const StepReport& report = {}) {
    if (!open_) detail::throw_error("end_step() without a matching begin_step()");
    if (report.tokens < 0) detail::throw_error("StepReport.tokens must be >= 0, got ", report.tokens);
    if (!(report.seconds >= 0.0))
      detail::throw_error("StepReport.seconds must be >= 0, got ", report.seconds);
    open_ = false;
    if (training_) {
      stats_.steps_done += 1;
      stats_.expected_work += stats_.expected_kept_fraction;
      stats_.realised_work += stats_.realised_kept_fraction;
      stats_.tokens += report.tokens;
      stats_.seconds += report.seconds;
      if (report.loss == report.loss) stats_.last_loss = report.loss;  // keep the last real loss
    }
    for (auto& o : end_observers_) o.second(plan_, report, stats_);
  }

  // Evaluation keeps every layer with scale 1 and leaves the training totals alone.
  void train() { set_training(true); }
  void eval() { set_training(false); }
  void set_training(bool training) {
    if (open_) detail::throw_error("cannot switch train/eval while step ", plan_.step, " is open");
    training_ = training;
  }
  bool training() const { return training_; }

  ObserverId on_step_begin(BeginObserver f) {
    begin_observers_.emplace_back(next_id_, std::move(f));
    return next_id_++;
  }
  ObserverId on_step_end(EndObserver f) {
    end_observers_.emplace_back(next_id_, std::move(f));
    return next_id_++;
  }
  // Returns false if no observer has this id.
  bool remove_observer(ObserverId id) {
    const auto erase = [id](auto& v) {
      for (auto it = v.begin(); it != v.end(); ++it)
        if (it->first == id) {
          v.erase(it);
          return true;
        }
      return false;
    };
    return erase(begin_observers_) || erase(end_observers_);
  }

  // The text form of the schedule, gate configuration, mode and statistics. A step that is open
  // is not part of it: save between end_step and the next begin_step.
  std::string save_state() const {
    ControllerState st{gate_.schedule(), gate_.config(), training_, stats_};
    return serialize_state(st);
  }

  // Restores statistics and mode from `state`. Its schedule and gate configuration must equal
  // this controller's, or the resumed run would make different decisions: that is an error.
  void restore_state(std::string_view state) {
    if (open_) detail::throw_error("cannot restore state while step ", plan_.step, " is open");
    ControllerState st = parse_state(state);
    if (st.schedule != gate_.schedule())
      detail::throw_error("controller state was saved with a different schedule");
    if (st.gate != gate_.config())
      detail::throw_error("controller state was saved with a different gate configuration (seed ",
                          st.gate.seed, ", sampling ", to_string(st.gate.sampling), ", scaling ",
                          to_string(st.gate.scaling), ", granularity ",
                          to_string(st.gate.granularity), ")");
    training_ = st.training;
    stats_ = st.stats;
  }

  const ControllerStats& stats() const { return stats_; }
  const LayerPlan& plan() const { return plan_; }
  const Gate& gate() const { return gate_; }
  const Schedule& schedule() const { return gate_.schedule(); }
  bool step_open() const { return open_; }

 private:
  Gate gate_;
  LayerPlan plan_;
  ControllerStats stats_;
  bool training_ = true;
  bool open_ = false;
  ObserverId next_id_ = 1;
  std::vector<std::pair<ObserverId, BeginObserver>> begin_observers_;
  std::vector<std::pair<ObserverId, EndObserver>> end_observers_;
};

}  // namespace pld
