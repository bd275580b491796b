// The corpus, its split and the vocabulary, loaded (and the vocabulary trained when missing) in
// one place for pretraining and fine-tuning.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "tokenizer.hpp"

namespace bert {

// Basic-tokenized word counts over the documents (of one split, or all when `which` is null):
// what a WordPiece vocabulary is trained on.
inline std::map<std::string, std::int64_t> word_counts(const std::vector<Document>& docs, const std::vector<Split>* split = nullptr,
                                                      Split which = Split::train) {
  std::map<std::string, std::int64_t> counts;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (split && (*split)[i] != which) continue;
    for (const auto& s : docs[i].sentences)
      for (const auto& w : s.words)
        for (const auto& b : basic_tokenize(w)) ++counts[b];
  }
  return counts;
}

struct Data {
  std::vector<Document> docs;
  std::vector<Split> split;
  Vocab vocab;
  std::string vocab_path;
  bool vocab_trained = false;  // trained here and not yet saved: the caller saves it once the run is valid
};

// Corpus, split and vocabulary, read (or the vocabulary trained) in memory: nothing is written,
// so a run refused later leaves no file behind.
inline Data load_data(const std::string& corpus, const std::string& vocab_arg, const std::string& out_dir, int vocab_size,
                      std::ostream& log, bool may_train_vocab = true, bool allow_noisy = false) {
  Data d;
  d.docs = read_corpus(corpus, allow_noisy);
  d.split = split_documents(d.docs);
  for (Split s : {Split::train, Split::validation, Split::heldout}) {
    const CorpusSummary c = summarize(d.docs, d.split, s);
    log << "corpus " << split_name(s) << ": " << c.documents << " documents, " << c.sentences << " sentences, " << c.words << " words\n";
  }
  if (summarize(d.docs, d.split, Split::train).words == 0) pld::detail::throw_error("corpus ", corpus, " has no training documents");
  d.vocab_path = vocab_arg.empty() ? out_dir + "/vocab.txt" : vocab_arg;
  if (std::filesystem::exists(d.vocab_path) || !vocab_arg.empty() || !may_train_vocab) {
    d.vocab = Vocab::load(d.vocab_path);
    log << "vocabulary: " << d.vocab.size() << " tokens from " << d.vocab_path << "\n";
  } else {
    const std::map<std::string, std::int64_t> counts = word_counts(d.docs, &d.split, Split::train);
    const auto t0 = std::chrono::steady_clock::now();
    d.vocab = train_wordpiece(counts, vocab_size);
    d.vocab_trained = true;
    log << "vocabulary: trained " << d.vocab.size() << " WordPiece tokens on " << counts.size() << " distinct words in "
        << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() << " s (for " << d.vocab_path << ")\n";
  }
  return d;
}

// The share of [UNK] among the real tokens of packed sequences ([CLS] and [SEP] not counted).
template <class Seqs>
double unk_share(const Seqs& seqs) {
  std::int64_t unk = 0, all = 0;
  for (const auto& s : seqs)
    for (std::size_t i = 1; i + 1 < s.ids.size(); ++i) {
      ++all;
      unk += s.ids[i] == kUnk ? 1 : 0;
    }
  return all > 0 ? static_cast<double>(unk) / static_cast<double>(all) : 0.0;
}

// More [UNK] than this among the training tokens means the vocabulary does not fit the corpus.
inline constexpr double kMaxUnkShare = 0.05;

inline void check_unk_share(double share, const std::string& vocab_path, bool allow_noisy) {
  if (!allow_noisy && share > kMaxUnkShare)
    pld::detail::throw_error(std::to_string(static_cast<int>(100.0 * share + 0.5)), "% of the training tokens are [UNK] with vocabulary ", vocab_path,
                             ": it does not fit this corpus (pass --allow-noisy-corpus to train anyway)");
}

}  // namespace bert
