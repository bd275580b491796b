// The vocab.txt reader (examples/bert/tokenizer.hpp), then encoding text with what it accepted.
#include "fuzz_common.hpp"
#include "tokenizer.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string t = pld_fuzz::text(data, size);
  pld_fuzz::refuse_or_accept([&] {
    const bert::Vocab v = bert::Vocab::parse(t, "fuzz input");
    const std::vector<int> ids = v.encode(t.substr(0, 256));
    for (int id : ids)
      if (id < 0 || id >= v.size()) __builtin_trap();
  });
  return 0;
}
