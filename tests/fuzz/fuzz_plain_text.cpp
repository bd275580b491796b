// A plain-text corpus (examples/bert/corpus.hpp): documents, the split, and (inputs up to 2 KB)
// WordPiece encoding of its words with a small vocabulary trained on them.
#include "dataset.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string t = pld_fuzz::text(data, size);
  pld_fuzz::refuse_or_accept([&] {
    const std::vector<bert::Document> docs = bert::parse_plain_text(t);
    const std::vector<bert::Split> split = bert::split_documents(docs);
    if (split.size() != docs.size()) __builtin_trap();
    const auto counts = bert::word_counts(docs);
    // WordPiece training costs O(words x merges): on small inputs only, so the fuzzer spends its
    // time on the reader and the split rather than on training vocabularies of big inputs.
    if (counts.empty() || t.size() > 2048) return;
    const bert::Vocab v = bert::train_wordpiece(counts, 64);
    for (const auto& d : docs)
      for (const auto& s : d.sentences)
        for (const auto& w : s.words)
          for (int id : v.encode(w))
            if (id < 0 || id >= v.size()) __builtin_trap();
  });
  return 0;
}
