// The controller's saved state (pld/hooks/state.hpp): parse, rebuild a controller, save it again.
#include "fuzz_common.hpp"
#include "pld/pld.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string t = pld_fuzz::text(data, size);
  pld_fuzz::refuse_or_accept([&] {
    pld::Controller c = pld::Controller::from_state(t);
    const std::string again = c.save_state();
    if (pld::Controller::from_state(again).save_state() != again) __builtin_trap();  // stable once accepted
    (void)c.begin_step(c.stats().step);
  });
  return 0;
}
