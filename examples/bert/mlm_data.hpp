// Pretraining data: WordPiece-encoded documents packed into sequences of consecutive sentences
// ([CLS] ... [SEP], at most max_len tokens, never crossing a document), BERT's masking (15% of the
// real tokens; of those 80% [MASK], 10% a random token, 10% unchanged) and a deterministic order.
// Every random choice is Philox of (seed, epoch, sequence, position): a data position (a count of
// sequences served) is all a checkpoint needs to continue the exact stream.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "corpus.hpp"
#include "pld/core/error.hpp"
#include "pld/core/random.hpp"
#include "tokenizer.hpp"

namespace bert {

// Random streams of the example (the library's own use 1..5 and 16..18).
enum class DataStream : std::uint32_t { shuffle = 64, mask = 65, embed_dropout = 66, finetune = 67 };

// Fisher-Yates shuffle of v driven by Philox blocks (seed, step, stream, layer, i): the same
// order for the same key on any machine, with no RNG state to save.
template <class T>
void philox_shuffle(std::vector<T>& v, std::uint64_t seed, std::uint64_t step, DataStream stream, std::uint32_t layer) {
  for (std::size_t i = v.size(); i-- > 1;) {
    const pld::U32x4 r = pld::random_block(seed, step, static_cast<std::uint32_t>(stream), layer, static_cast<std::uint32_t>(i));
    const auto j = static_cast<std::size_t>(((static_cast<std::uint64_t>(r.v[0]) << 32) | r.v[1]) % (i + 1));
    std::swap(v[i], v[j]);
  }
}

struct Sequence {
  std::vector<int> ids;  // [CLS] tokens [SEP], unpadded
  int document = 0;      // index into the corpus
};

// Packs the documents of `which` into sequences of at most max_len tokens.
inline std::vector<Sequence> pack_sequences(const std::vector<Document>& docs, const std::vector<Split>& split, Split which,
                                            const Vocab& vocab, int max_len) {
  if (max_len < 8) pld::detail::throw_error("max_len must be >= 8, got ", max_len);
  const std::size_t room = static_cast<std::size_t>(max_len) - 2;
  std::vector<Sequence> out;
  std::vector<int> words;
  for (std::size_t d = 0; d < docs.size(); ++d) {
    if (split[d] != which) continue;
    std::vector<int> cur;
    auto emit = [&] {
      if (cur.empty()) return;
      Sequence s;
      s.document = static_cast<int>(d);
      s.ids.reserve(cur.size() + 2);
      s.ids.push_back(kCls);
      s.ids.insert(s.ids.end(), cur.begin(), cur.end());
      s.ids.push_back(kSep);
      out.push_back(std::move(s));
      cur.clear();
    };
    for (const auto& sent : docs[d].sentences) {
      words.clear();
      for (const auto& w : sent.words)
        for (const auto& b : basic_tokenize(w)) vocab.encode_word(b, words);
      if (cur.size() + words.size() > room) emit();
      // A sentence longer than a whole sequence is cut into pieces.
      for (std::size_t i = 0; i < words.size(); i += room) {
        const std::size_t n = std::min(room, words.size() - i);
        if (cur.size() + n > room) emit();
        cur.insert(cur.end(), words.begin() + static_cast<std::ptrdiff_t>(i), words.begin() + static_cast<std::ptrdiff_t>(i + n));
      }
    }
    emit();
  }
  return out;
}

// One batch, padded to max_len: inputs after masking, targets (-1 = not predicted), valid mask.
struct MlmBatch {
  int batch = 0, seq = 0;
  std::vector<int> input;          // (B, T)
  std::vector<int> target;         // (B, T): the original id at masked positions, -1 elsewhere
  std::vector<std::uint8_t> valid; // (B, T)
  std::int64_t real_tokens = 0;
  int masked = 0;

  // Rows [first, first + rows) as a batch of their own (a data-parallel rank's shard).
  void slice_into(int first, int rows, MlmBatch& out) const {
    const auto T = static_cast<std::size_t>(seq);
    const auto a = static_cast<std::size_t>(first) * T, n = static_cast<std::size_t>(rows) * T;
    out.batch = rows;
    out.seq = seq;
    out.input.assign(input.begin() + static_cast<std::ptrdiff_t>(a), input.begin() + static_cast<std::ptrdiff_t>(a + n));
    out.target.assign(target.begin() + static_cast<std::ptrdiff_t>(a), target.begin() + static_cast<std::ptrdiff_t>(a + n));
    out.valid.assign(valid.begin() + static_cast<std::ptrdiff_t>(a), valid.begin() + static_cast<std::ptrdiff_t>(a + n));
    out.real_tokens = 0;
    out.masked = 0;
    for (std::size_t i = 0; i < n; ++i) {
      out.real_tokens += out.valid[i];
      out.masked += out.target[i] >= 0 ? 1 : 0;
    }
  }
};

// BERT's masking of sequence `s` into row `row` of `b`, keyed by (seed, epoch, sequence id).
inline void mask_into(const Sequence& s, std::uint64_t seed, std::uint64_t epoch, std::uint32_t sequence_id, int vocab_size,
                      double mask_prob, MlmBatch& b, int row) {
  const std::size_t base = static_cast<std::size_t>(row) * static_cast<std::size_t>(b.seq);
  const int n = static_cast<int>(s.ids.size());
  int masked_here = 0;
  for (int t = 0; t < b.seq; ++t) {
    const std::size_t i = base + static_cast<std::size_t>(t);
    b.input[i] = t < n ? s.ids[static_cast<std::size_t>(t)] : kPad;
    b.target[i] = -1;
    b.valid[i] = t < n ? 1 : 0;
  }
  auto draw = [&](int t) {
    return pld::random_block(seed, epoch, static_cast<std::uint32_t>(DataStream::mask), sequence_id & 0xFFFFu,
                             static_cast<std::uint32_t>((sequence_id >> 16) * 4096u + static_cast<std::uint32_t>(t)));
  };
  auto apply = [&](int t, const pld::U32x4& r) {
    const std::size_t i = base + static_cast<std::size_t>(t);
    b.target[i] = b.input[i];
    const float u = pld::uniform_float(r.v[1]);
    if (u < 0.8f) {
      b.input[i] = kMask;
    } else if (u < 0.9f) {
      b.input[i] = kNumSpecial + static_cast<int>(r.v[2] % static_cast<std::uint32_t>(vocab_size - kNumSpecial));
    }
    ++masked_here;
  };
  for (int t = 1; t + 1 < n; ++t) {  // never [CLS] or [SEP]
    const pld::U32x4 r = draw(t);
    if (pld::uniform_float(r.v[0]) < static_cast<float>(mask_prob)) apply(t, r);
  }
  if (masked_here == 0 && n > 2) {  // every sequence predicts at least one token
    const pld::U32x4 r = draw(0);
    apply(1 + static_cast<int>(r.v[3] % static_cast<std::uint32_t>(n - 2)), r);
  }
  b.masked += masked_here;
  b.real_tokens += n;
}

// The training stream: epoch e visits every sequence once in an order shuffled by (seed, e);
// position k of the stream is sequence order_e[k % n] of epoch e = k / n.
class MlmStream {
 public:
  MlmStream(const std::vector<Sequence>* seqs, int max_len, int vocab_size, std::uint64_t seed, double mask_prob)
      : seqs_(seqs), max_len_(max_len), vocab_size_(vocab_size), seed_(seed), mask_prob_(mask_prob) {
    if (!seqs_ || seqs_->empty()) pld::detail::throw_error("no training sequences (corpus too small?)");
  }

  std::uint64_t position() const { return position_; }
  void seek(std::uint64_t position) { position_ = position; }
  std::size_t size() const { return seqs_->size(); }
  double epoch() const { return static_cast<double>(position_) / static_cast<double>(seqs_->size()); }

  void next(int batch, MlmBatch& b) {
    b.batch = batch;
    b.seq = max_len_;
    const std::size_t n = static_cast<std::size_t>(batch) * static_cast<std::size_t>(max_len_);
    b.input.resize(n);
    b.target.resize(n);
    b.valid.resize(n);
    b.real_tokens = 0;
    b.masked = 0;
    for (int r = 0; r < batch; ++r, ++position_) {
      const std::uint64_t e = position_ / seqs_->size();
      const auto k = static_cast<std::size_t>(position_ % seqs_->size());
      if (e != order_epoch_) shuffle(e);
      const std::uint32_t id = order_[k];
      mask_into((*seqs_)[id], seed_, e, id, vocab_size_, mask_prob_, b, r);
    }
  }

 private:
  void shuffle(std::uint64_t epoch) {
    const std::size_t n = seqs_->size();
    order_.resize(n);
    for (std::size_t i = 0; i < n; ++i) order_[i] = static_cast<std::uint32_t>(i);
    philox_shuffle(order_, seed_, epoch, DataStream::shuffle, 0);
    order_epoch_ = epoch;
  }

  const std::vector<Sequence>* seqs_;
  int max_len_, vocab_size_;
  std::uint64_t seed_;
  double mask_prob_;
  std::uint64_t position_ = 0;
  std::uint64_t order_epoch_ = ~0ull;
  std::vector<std::uint32_t> order_;
};

}  // namespace bert
