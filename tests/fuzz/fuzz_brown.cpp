// One tagged Brown file (examples/bert/corpus.hpp), its text check, and the words a vocabulary
// would be trained on.
#include "dataset.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string t = pld_fuzz::text(data, size);
  if (bert::non_text_bytes(t) > t.size()) __builtin_trap();
  pld_fuzz::refuse_or_accept([&] {
    const bert::Document d = bert::parse_brown_text(t, "ca01");
    for (const auto& s : d.sentences)
      if (s.words.size() != s.tags.size() || s.words.empty()) __builtin_trap();
    (void)bert::word_counts({d});
  });
  return 0;
}
