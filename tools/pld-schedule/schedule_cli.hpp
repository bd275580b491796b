// The pld-schedule command line: print theta(t) and p_l(t) of a preset at chosen steps, the
// expected kept fraction and ideal speedup over a run, solve theta_bar for a target speedup, and
// draw the schedule as an SVG. Kept in a header so the tests drive it without a subprocess.
#pragma once

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "pld/pld.hpp"
#include "pld-schedule/svg_plot.hpp"

namespace pld::tools {

inline const char* schedule_cli_usage() {
  return R"(usage: pld-schedule [options]

Prints a progressive-layer-dropping schedule: theta(t), the keep probability p_l(t) of every
layer l = 1..L at chosen steps, and the compute it saves over a run.

Schedule
  --preset NAME       none | pld | random | td_only | dd_only            (default pld)
  --layers L          number of layers                                   (default 12)
  --theta-bar X       floor of theta (pld, td_only); fixed theta (dd_only) (default 0.5)
  --gamma X           exponential decay rate per step                     (default 0.001)
  --keep-ratio X      random: the fixed keep ratio (default: PLD's steady-state mean)
  --delay N           steps before any dropping                           (default 0)
  --decay KIND        pld, td_only: exponential | linear | cosine         (default exponential)
  --decay-steps N     length of a linear or cosine decay
  --profile W,W,...   pld, dd_only: per-layer drop weights (p_l = 1 - w_l (1 - theta))

Output
  --steps T,T,...     steps to print (default: 0 and points spread over the run)
  --total T           length of the run for the accounting and the plot (default 100000)
  --overhead F        share of a step outside the layer stack, for the speedup (default 0)
  --plan S            solve theta_bar (keep ratio for random) for ideal speedup S over --total
  --csv               print the table as CSV
  --svg FILE          write a heat map of p_l(t) with theta(t) beside it
  --help              this text
)";
}

namespace detail {

inline std::int64_t cli_int(const std::string& flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE)
    pld::detail::throw_error(flag, " expects an integer, got '", v, "'");
  return static_cast<std::int64_t>(x);
}

inline double cli_double(const std::string& flag, const std::string& v) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || errno == ERANGE || !std::isfinite(x))
    pld::detail::throw_error(flag, " expects a number, got '", v, "'");
  return x;
}

inline std::vector<std::string> split_commas(const std::string& flag, const std::string& v) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : v) {
    if (c == ',') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  for (const auto& p : parts)
    if (p.empty()) pld::detail::throw_error(flag, " has an empty item in '", v, "'");
  return parts;
}

inline std::string describe(const Schedule& s, Preset preset) {
  std::ostringstream os;
  os.precision(6);
  const TemporalSchedule& t = s.temporal();
  os << "preset " << to_string(preset) << ", L = " << s.num_layers() << ", theta: ";
  switch (t.kind()) {
    case TemporalKind::constant:
      if (t.never_drops()) os << "1"; else os << "constant " << t.theta_bar();
      break;
    case TemporalKind::exponential:
      os << "(1 - " << t.theta_bar() << ") exp(-" << t.gamma() << " t) + " << t.theta_bar();
      break;
    case TemporalKind::linear: os << "linear to " << t.theta_bar() << " over " << t.steps() << " steps"; break;
    case TemporalKind::cosine: os << "cosine to " << t.theta_bar() << " over " << t.steps() << " steps"; break;
  }
  if (t.delay() > 0) os << " after " << t.delay() << " steps";
  os << ", depth " << to_string(s.depth().kind());
  return os.str();
}

}  // namespace detail

struct ScheduleCliOptions {
  ScheduleSpec spec;
  std::vector<std::int64_t> steps;
  std::int64_t total = 100000;
  double overhead = 0.0;
  std::optional<double> plan;
  bool csv = false;
  std::optional<std::string> svg;
  bool help = false;
};

inline ScheduleCliOptions parse_schedule_cli(const std::vector<std::string>& args) {
  using detail::cli_double;
  using detail::cli_int;
  ScheduleCliOptions o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> const std::string& {
      if (i + 1 >= args.size()) pld::detail::throw_error(a, " needs a value");
      return args[++i];
    };
    if (a == "--help" || a == "-h") o.help = true;
    else if (a == "--preset") o.spec.preset = parse_preset(value());
    else if (a == "--layers") {
      const std::int64_t l = cli_int(a, value());
      if (l < 1 || l > Schedule::kMaxLayers)
        pld::detail::throw_error("--layers must be in [1, ", Schedule::kMaxLayers, "], got ", l);
      o.spec.num_layers = static_cast<int>(l);
    } else if (a == "--theta-bar") o.spec.theta_bar = cli_double(a, value());
    else if (a == "--gamma") o.spec.gamma = cli_double(a, value());
    else if (a == "--keep-ratio") o.spec.keep_ratio = cli_double(a, value());
    else if (a == "--delay") o.spec.delay = cli_int(a, value());
    else if (a == "--decay") o.spec.decay = parse_temporal_kind(value());
    else if (a == "--decay-steps") o.spec.decay_steps = cli_int(a, value());
    else if (a == "--profile") {
      o.spec.profile.clear();
      for (const auto& w : detail::split_commas(a, value())) o.spec.profile.push_back(cli_double(a, w));
    } else if (a == "--steps") {
      o.steps.clear();
      for (const auto& t : detail::split_commas(a, value())) {
        const std::int64_t step = cli_int(a, t);
        if (step < 0) pld::detail::throw_error("--steps must be >= 0, got ", step);
        o.steps.push_back(step);
      }
    } else if (a == "--total") {
      o.total = cli_int(a, value());
      if (o.total < 1) pld::detail::throw_error("--total must be >= 1, got ", o.total);
    } else if (a == "--overhead") o.overhead = cli_double(a, value());
    else if (a == "--plan") o.plan = cli_double(a, value());
    else if (a == "--csv") o.csv = true;
    else if (a == "--svg") o.svg = value();
    else pld::detail::throw_error("unknown option '", a, "' (see --help)");
  }
  return o;
}

// Runs the tool; returns the exit status. Errors are one line on `err`.
inline int run_schedule_cli(const std::vector<std::string>& args, std::ostream& result, std::ostream& err) {
  // Everything is written to `out` first and passed on only when the whole run succeeded, so an
  // error leaves exactly one line and nothing else.
  std::ostringstream out;
  try {
    ScheduleCliOptions o = parse_schedule_cli(args);
    if (o.help) {
      result << schedule_cli_usage();
      return 0;
    }
    ideal_speedup(1.0, o.overhead);  // validates --overhead before any output
    std::optional<SpeedupPlan> plan;
    if (o.plan) {
      plan = plan_for_speedup(o.spec, o.total, *o.plan, o.overhead);
      o.spec = plan->spec;
    }
    const Schedule s = make_schedule(o.spec);
    if (o.steps.empty()) {  // 0, then eight points spread evenly over the run
      for (int k = 0; k <= 8; ++k) o.steps.push_back(o.total * k / 8 - (k == 8 ? 1 : 0));
    }
    const int L = s.num_layers();
    std::vector<double> p(static_cast<std::size_t>(L));
    const double kept = cumulative_kept_fraction(s, o.total);
    const double speedup = ideal_speedup(kept, o.overhead);

    if (o.csv) {
      out << "step,theta";
      for (int l = 1; l <= L; ++l) out << ",p_" << l;
      out << ",expected_kept_fraction\n";
      char buf[64];
      for (std::int64_t t : o.steps) {
        s.keep_probs(t, p.data());
        out << t;
        std::snprintf(buf, sizeof buf, ",%.9g", s.theta(t));
        out << buf;
        for (double q : p) {
          std::snprintf(buf, sizeof buf, ",%.9g", q);
          out << buf;
        }
        std::snprintf(buf, sizeof buf, ",%.9g\n", s.expected_kept_fraction(t));
        out << buf;
      }
    } else {
      char buf[128];
      out << "pld-schedule: " << detail::describe(s, o.spec.preset) << '\n';
      if (plan) {
        std::snprintf(buf, sizeof buf, "plan: %s = %.6f gives ideal speedup %.4fx over %lld steps\n",
                      o.spec.preset == Preset::random ? "keep_ratio" : "theta_bar", plan->knob,
                      plan->speedup, static_cast<long long>(o.total));
        out << buf;
      }
      out << "      step   theta ";
      for (int l = 1; l <= L; ++l) {
        std::snprintf(buf, sizeof buf, " %6s", ("p_" + std::to_string(l)).c_str());
        out << buf;
      }
      out << "    kept\n";
      for (std::int64_t t : o.steps) {
        s.keep_probs(t, p.data());
        std::snprintf(buf, sizeof buf, "%10lld  %6.4f ", static_cast<long long>(t), s.theta(t));
        out << buf;
        for (double q : p) {
          std::snprintf(buf, sizeof buf, " %6.4f", q);
          out << buf;
        }
        std::snprintf(buf, sizeof buf, "  %6.4f\n", s.expected_kept_fraction(t));
        out << buf;
      }
      std::snprintf(buf, sizeof buf,
                    "over %lld steps: expected kept fraction of layer work %.4f, ideal speedup %.4fx",
                    static_cast<long long>(o.total), kept, speedup);
      out << buf;
      if (o.overhead > 0.0) out << " (with " << o.overhead << " of each step outside the layers)";
      out << '\n';
    }

    if (o.svg) {
      std::ofstream f(*o.svg, std::ios::binary | std::ios::trunc);
      if (!f) pld::detail::throw_error("cannot open '", *o.svg, "' for writing");
      write_schedule_svg(f, s, o.total, detail::describe(s, o.spec.preset));
      f.flush();
      if (!f) pld::detail::throw_error("failed writing '", *o.svg, "'");
      if (!o.csv) out << "wrote " << *o.svg << '\n';
    }
    result << out.str();
    return 0;
  } catch (const std::exception& e) {
    err << "pld-schedule: " << e.what() << '\n';
    return 2;
  }
}

}  // namespace pld::tools
