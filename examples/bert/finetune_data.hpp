// Fine-tuning data from the documents held out of pretraining: genre classification (a passage
// of up to max_len tokens -> its Brown genre) and POS tagging (Brown tags mapped to a coarse set,
// a label on the first WordPiece of each word). The held-out documents are split again by
// document, stratified by genre: in each genre, ordered by name hash, every 4th (starting with
// the first) is test, the rest train.
#pragma once

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "mlm_data.hpp"
#include "tokenizer.hpp"

namespace bert {

// The 15 genres in letter order; a genre's label is its index here.
inline const std::vector<std::string>& genre_labels() {
  static const std::vector<std::string> g = [] {
    std::vector<std::string> v;
    for (char c : std::string("abcdefghjklmnpr")) v.push_back(brown_genre_name(c));
    return v;
  }();
  return g;
}

// The coarse tag set (the twelve "universal" tags of Petrov, Das & McDonald 2012).
inline const std::vector<std::string>& pos_labels() {
  static const std::vector<std::string> t = {"NOUN", "VERB", "ADJ", "ADV", "PRON", "DET", "ADP", "NUM", "CONJ", "PRT", ".", "X"};
  return t;
}

// Brown tag -> coarse tag index. Suffixes -tl (title), -hl (headline), -nc (cited) are dropped;
// a fw- prefix (foreign word) gives X; a contraction such as nn+bez is labelled by its first part.
// Mapping (Brown tag -> coarse):
//   nn*, np*, nr*                              -> NOUN     vb*, be*, do*, hv*, md   -> VERB
//   jj*, od                                    -> ADJ      rb*, rn, ql*, wrb, *     -> ADV
//   pp*, wp*, ex (existential there)           -> PRON     at, ap, abn, abx, dt*, wdt -> DET
//   in                                         -> ADP      cd                       -> NUM
//   cc, cs                                     -> CONJ     rp, to                   -> PRT
//   punctuation (. , : ; ( ) -- ' ' ` `)        -> .        uh, nil, anything else   -> X
inline int coarse_pos(std::string tag) {
  if (tag.rfind("fw-", 0) == 0) return 11;
  const auto plus = tag.find('+');
  if (plus != std::string::npos) tag = tag.substr(0, plus);
  for (const char* suffix : {"-tl", "-hl", "-nc"}) {
    const std::string s(suffix);
    while (tag.size() > s.size() && tag.compare(tag.size() - s.size(), s.size(), s) == 0) tag.resize(tag.size() - s.size());
  }
  auto starts = [&](const char* p) { return tag.rfind(p, 0) == 0; };
  if (tag.empty()) return 11;
  if (!std::isalpha(static_cast<unsigned char>(tag[0]))) return tag == "*" ? 3 : 10;  // "*" is Brown's "not"
  if (starts("nn") || starts("np") || starts("nr")) return 0;
  if (starts("vb") || starts("be") || starts("do") || starts("hv") || tag == "md") return 1;
  if (starts("jj") || tag == "od") return 2;
  if (starts("rb") || tag == "rn" || starts("ql") || tag == "wrb") return 3;
  if (starts("pp") || starts("wp") || tag == "ex") return 4;
  if (tag == "at" || tag == "ap" || tag == "abn" || tag == "abx" || starts("dt") || tag == "wdt") return 5;
  if (tag == "in") return 6;
  if (tag == "cd") return 7;
  if (tag == "cc" || tag == "cs") return 8;
  if (tag == "rp" || tag == "to") return 9;
  return 11;
}

enum class FinetuneSplit { train, test };

inline std::vector<int> finetune_split(const std::vector<Document>& docs, const std::vector<Split>& split) {
  // -1: not held out; 0: fine-tuning train; 1: fine-tuning test.
  std::map<std::string, std::vector<std::size_t>> by_genre;
  for (std::size_t i = 0; i < docs.size(); ++i)
    if (split[i] == Split::heldout) by_genre[docs[i].genre].push_back(i);
  std::vector<int> out(docs.size(), -1);
  for (auto& [g, ids] : by_genre) {
    std::sort(ids.begin(), ids.end(), [&](std::size_t a, std::size_t b) {
      const auto ha = pld::detail::fnv1a64(docs[a].name), hb = pld::detail::fnv1a64(docs[b].name);
      return ha != hb ? ha < hb : docs[a].name < docs[b].name;
    });
    for (std::size_t k = 0; k < ids.size(); ++k) out[ids[k]] = k % 4 == 0 ? 1 : 0;
  }
  return out;
}

// A sequence with one label per token position (-1: no label there).
struct LabeledSequence {
  std::vector<int> ids;
  std::vector<int> labels;
  int document = 0;
};

// Genre passages: the document's sequences packed as for pretraining, labelled at [CLS].
inline std::vector<LabeledSequence> genre_sequences(const std::vector<Document>& docs, const std::vector<Split>& split,
                                                    const std::vector<int>& ft, int which, const Vocab& vocab, int max_len) {
  std::vector<LabeledSequence> out;
  for (const Sequence& s : pack_sequences(docs, split, Split::heldout, vocab, max_len)) {
    if (ft[static_cast<std::size_t>(s.document)] != which) continue;
    const std::string& g = docs[static_cast<std::size_t>(s.document)].genre;
    const auto& labels = genre_labels();
    const auto it = std::find(labels.begin(), labels.end(), g);
    if (it == labels.end()) pld::detail::throw_error("document ", docs[static_cast<std::size_t>(s.document)].name, " has no Brown genre: the genre task needs the Brown corpus");
    LabeledSequence l;
    l.ids = s.ids;
    l.labels.assign(s.ids.size(), -1);
    l.labels[0] = static_cast<int>(it - labels.begin());
    l.document = s.document;
    out.push_back(std::move(l));
  }
  return out;
}

// POS sequences: consecutive sentences of a document packed up to max_len; each word's coarse
// tag on its first WordPiece.
inline std::vector<LabeledSequence> pos_sequences(const std::vector<Document>& docs, const std::vector<Split>& split,
                                                  const std::vector<int>& ft, int which, const Vocab& vocab, int max_len) {
  const std::size_t room = static_cast<std::size_t>(max_len) - 2;
  std::vector<LabeledSequence> out;
  for (std::size_t d = 0; d < docs.size(); ++d) {
    if (split[d] != Split::heldout || ft[d] != which) continue;
    std::vector<int> ids, labels;
    auto emit = [&] {
      if (ids.empty()) return;
      LabeledSequence l;
      l.ids.push_back(kCls);
      l.labels.push_back(-1);
      l.ids.insert(l.ids.end(), ids.begin(), ids.end());
      l.labels.insert(l.labels.end(), labels.begin(), labels.end());
      l.ids.push_back(kSep);
      l.labels.push_back(-1);
      l.document = static_cast<int>(d);
      out.push_back(std::move(l));
      ids.clear();
      labels.clear();
    };
    for (const Sentence& s : docs[d].sentences) {
      if (s.tags.size() != s.words.size()) pld::detail::throw_error("the POS task needs a tagged corpus (Brown); document ", docs[d].name, " has no tags");
      std::vector<int> sid, slab;
      for (std::size_t w = 0; w < s.words.size(); ++w) {
        const int tag = coarse_pos(s.tags[w]);
        bool first = true;
        for (const auto& piece : basic_tokenize(s.words[w])) {
          const std::size_t before = sid.size();
          vocab.encode_word(piece, sid);
          for (std::size_t k = before; k < sid.size(); ++k) {
            slab.push_back(first ? tag : -1);
            first = false;
          }
        }
      }
      if (sid.size() > room) {  // an over-long sentence: its first max_len - 2 pieces only
        sid.resize(room);
        slab.resize(room);
      }
      if (ids.size() + sid.size() > room) emit();
      ids.insert(ids.end(), sid.begin(), sid.end());
      labels.insert(labels.end(), slab.begin(), slab.end());
    }
    emit();
  }
  return out;
}

}  // namespace bert
