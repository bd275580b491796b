// pld-bert's JSON config (examples/bert/options.hpp) and the typed getters that turn its values
// into a model, a schedule and an optimizer.
#include "fuzz_common.hpp"
#include "run_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string t = pld_fuzz::text(data, size);
  pld_fuzz::refuse_or_accept([&] {
    bert::Options o("pretrain", bert::pretrain_option_specs());
    o.load_json_text(t, "fuzz input");
    const bert::ModelConfig mc = bert::model_config_from(o, 1000);
    (void)bert::optimizer_config_from(o);
    (void)pld::make_schedule(bert::schedule_spec_from(o, mc.layers));
    (void)o.integer("seed", 0, std::numeric_limits<std::int64_t>::max());
    (void)o.boolean("allow-noisy-corpus");
  });
  return 0;
}
