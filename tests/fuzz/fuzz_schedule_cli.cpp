// pld-schedule's arguments (tools/pld-schedule/schedule_cli.hpp): the input split at NUL bytes or
// newlines into argv, parsed, and the schedule it describes built and evaluated (no file written:
// --svg is dropped).
#include "fuzz_common.hpp"
#include "pld-schedule/schedule_cli.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> args(1);
  for (std::size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n') args.emplace_back();
    else args.back() += c;
  }
  if (args.size() > 64) return 0;
  pld_fuzz::refuse_or_accept([&] {
    pld::tools::ScheduleCliOptions o = pld::tools::parse_schedule_cli(args);
    if (o.steps.size() > 1000) return;
    pld::ideal_speedup(1.0, o.overhead);
    if (o.plan) o.spec = pld::plan_for_speedup(o.spec, o.total, *o.plan, o.overhead).spec;
    const pld::Schedule s = pld::make_schedule(o.spec);
    std::vector<double> p(static_cast<std::size_t>(s.num_layers()));
    for (std::int64_t t : o.steps) {
      s.keep_probs(t, p.data());
      for (double q : p)
        if (!(q >= 0.0 && q <= 1.0)) __builtin_trap();
    }
    const double kept = pld::cumulative_kept_fraction(s, o.total);
    if (!(kept >= 0.0 && kept <= 1.0 + 1e-12)) __builtin_trap();
  });
  return 0;
}
