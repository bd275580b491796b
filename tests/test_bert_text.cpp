// pld-bert's text side: the Brown reader and the split, basic tokenization, WordPiece training,
// encoding and vocab.txt round trips, packing, masking statistics and the data stream.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "dataset.hpp"
#include "mlm_data.hpp"
#include "prefetch.hpp"
#include "bert_test_util.hpp"
#include "tokenizer.hpp"

#ifndef PLD_TEST_DATA_DIR
#error "PLD_TEST_DATA_DIR must name tests/data"
#endif

namespace {
const std::string kSlice = std::string(PLD_TEST_DATA_DIR) + "/brown-slice";

std::string temp_path(const std::string& name) {
  const auto dir = std::filesystem::path(bert_test::fresh_dir("text")).parent_path();  // this process's own
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}
}  // namespace

TEST_CASE("basic tokenization lower-cases, strips accents and splits punctuation", "[bert][tokenizer]") {
  using V = std::vector<std::string>;
  CHECK(bert::basic_tokenize("Hello, World!") == V{"hello", ",", "world", "!"});
  CHECK(bert::basic_tokenize("don't  stop\tthe\nmusic") == V{"don", "'", "t", "stop", "the", "music"});
  CHECK(bert::basic_tokenize("Caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m") == V{"cafe", "naive", "angstrom"});
  CHECK(bert::basic_tokenize("e\xCC\x81t\xC3\xA9") == V{"ete"});  // combining acute dropped
  CHECK(bert::basic_tokenize("a\x01" "b \xE2\x80\x94 c") == V{"ab", "\xE2\x80\x94", "c"});  // control removed, em dash split
  CHECK(bert::basic_tokenize("  ").empty());
  CHECK(bert::basic_tokenize("\xFF\xFEok") == V{"ok"});  // invalid UTF-8 bytes dropped
}

TEST_CASE("WordPiece encodes greedily, longest match first", "[bert][tokenizer]") {
  std::vector<std::string> t = bert::special_tokens();
  for (const char* s : {"un", "##aff", "##able", "##a", "##f", "##b", "##l", "##e", "a", "runn", "##ing", "run", ",", "u", "##n"}) t.push_back(s);
  const bert::Vocab v(t);
  auto pieces = [&](const std::string& text) {
    std::vector<std::string> out;
    for (int id : v.encode(text)) out.push_back(v.token(id));
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(pieces("unaffable") == V{"un", "##aff", "##able"});
  CHECK(pieces("Running, unable") == V{"runn", "##ing", ",", "un", "##able"});
  CHECK(pieces("xyz") == V{"[UNK]"});
  CHECK(pieces("unx") == V{"[UNK]"});  // a word that cannot be covered is one [UNK]
  CHECK(pieces(std::string(101, 'a')) == V{"[UNK]"});
  CHECK(v.decode(v.encode("unaffable running")) == "unaffable running");
}

TEST_CASE("a trained vocabulary round-trips through vocab.txt and encodes its corpus", "[bert][tokenizer]") {
  const auto docs = bert::read_corpus(kSlice);
  const auto counts = bert::word_counts(docs);
  const bert::Vocab v = bert::train_wordpiece(counts, 600);
  CHECK(v.size() == 600);
  for (int i = 0; i < bert::kNumSpecial; ++i) CHECK(v.token(i) == bert::special_tokens()[static_cast<std::size_t>(i)]);
  const bert::Vocab again = bert::train_wordpiece(counts, 600);
  CHECK(again.tokens() == v.tokens());  // deterministic
  const std::string path = temp_path("vocab.txt");
  v.save(path);
  const bert::Vocab loaded = bert::Vocab::load(path);
  CHECK(loaded.tokens() == v.tokens());
  CHECK(loaded.hash() == v.hash());
  // Every word of the corpus whose characters are in the vocabulary decodes back to itself.
  int checked = 0, unk = 0;
  for (const auto& [w, n] : counts) {
    const std::vector<int> ids = v.encode(w);
    if (ids.size() == 1 && ids[0] == bert::kUnk) {
      ++unk;
      continue;
    }
    REQUIRE(v.decode(ids) == w);
    ++checked;
  }
  CHECK(checked > 1000);
  CHECK(unk < checked / 50);  // only words with rare characters
  // Frequent words become single tokens.
  CHECK(v.encode("the").size() == 1);
  CHECK(v.encode("said").size() == 1);
}

TEST_CASE("vocab.txt that is not ours is refused", "[bert][tokenizer][errors]") {
  CHECK_THROWS_WITH(bert::Vocab::load(temp_path("no-such-vocab.txt")), Catch::Matchers::Contains("cannot read vocabulary"));
  const std::string bad = temp_path("bad-vocab.txt");
  write_text(bad, "[PAD]\n[UNK]\nhello\n");
  CHECK_THROWS_WITH(bert::Vocab::load(bad), Catch::Matchers::Contains("line 3 must be [CLS]"));
  write_text(bad, "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\na\n");
  CHECK_THROWS_WITH(bert::Vocab::load(bad), Catch::Matchers::Contains("duplicate"));
}

TEST_CASE("the Brown reader and the split", "[bert][corpus]") {
  const auto docs = bert::read_corpus(kSlice);
  REQUIRE(docs.size() == 20);
  CHECK(docs[0].name == "ca01");
  CHECK(docs[0].genre == "news");
  CHECK(docs[10].genre == "fiction");
  CHECK(docs[0].sentences.size() == 12);
  const auto& s0 = docs[0].sentences[0];
  CHECK(s0.words[0] == "The");
  CHECK(s0.tags[0] == "at");
  CHECK(s0.words.size() == s0.tags.size());
  const auto split = bert::split_documents(docs);
  CHECK(split == bert::split_documents(docs));
  for (const std::string genre : {"news", "fiction"}) {  // 10 per genre: 1 validation, 2 held out, 7 train
    int n[3] = {0, 0, 0};
    for (std::size_t i = 0; i < docs.size(); ++i)
      if (docs[i].genre == genre) ++n[static_cast<int>(split[i])];
    CHECK(n[0] == 7);
    CHECK(n[1] == 1);
    CHECK(n[2] == 2);
  }
}

TEST_CASE("plain-text corpora and bad corpus paths", "[bert][corpus][errors]") {
  const std::string p = temp_path("plain.txt");
  write_text(p, "First document, line one.\nLine two.\n\n\nSecond document.\n");
  const auto docs = bert::read_corpus(p);
  REQUIRE(docs.size() == 2);
  CHECK(docs[0].sentences.size() == 2);
  CHECK(docs[1].sentences[0].words == std::vector<std::string>{"Second", "document."});
  CHECK(docs[0].genre.empty());
  CHECK_THROWS_WITH(bert::read_corpus(temp_path("missing-corpus")), Catch::Matchers::Contains("does not exist"));
  const std::string empty = temp_path("empty.txt");
  write_text(empty, "\n\n  \n");
  CHECK_THROWS_WITH(bert::read_corpus(empty), Catch::Matchers::Contains("is empty"));
  const std::string dir = temp_path("not-brown");
  std::filesystem::create_directories(dir);
  CHECK_THROWS_WITH(bert::read_corpus(dir), Catch::Matchers::Contains("no Brown files"));
  const std::string badtag = temp_path("brown-bad");
  std::filesystem::create_directories(badtag);
  write_text(badtag + "/ca01", "\tThe/at jury said/vbd\n");
  CHECK_THROWS_WITH(bert::read_corpus(badtag), Catch::Matchers::Contains("is not word/tag"));
}

TEST_CASE("packing, masking statistics and the data stream", "[bert][data]") {
  const auto docs = bert::read_corpus(kSlice);
  const auto split = bert::split_documents(docs);
  const auto counts = bert::word_counts(docs);
  const bert::Vocab v = bert::train_wordpiece(counts, 800);
  const int T = 32;
  const auto seqs = bert::pack_sequences(docs, split, bert::Split::train, v, T);
  REQUIRE(seqs.size() > 50);
  for (const auto& s : seqs) {
    REQUIRE(s.ids.size() <= static_cast<std::size_t>(T));
    REQUIRE(s.ids.front() == bert::kCls);
    REQUIRE(s.ids.back() == bert::kSep);
    REQUIRE(split[static_cast<std::size_t>(s.document)] == bert::Split::train);
  }

  // Masking over many draws: 15% of real non-special tokens, then 80/10/10.
  bert::MlmStream stream(&seqs, T, v.size(), 11, 0.15);
  std::int64_t candidates = 0, masked = 0, as_mask = 0, as_same = 0, as_random = 0;
  bert::MlmBatch b;
  const std::size_t epochs = 40;
  std::vector<int> seen(seqs.size(), 0);
  for (std::size_t k = 0; k < epochs * seqs.size() / 8; ++k) {
    stream.next(8, b);
    for (int r = 0; r < 8; ++r) {
      for (int t = 0; t < T; ++t) {
        const auto i = static_cast<std::size_t>(r * T + t);
        if (!b.valid[i]) {
          REQUIRE(b.input[i] == bert::kPad);
          REQUIRE(b.target[i] == -1);
          continue;
        }
        const int orig = b.target[i] >= 0 ? b.target[i] : b.input[i];
        if (orig == bert::kCls || orig == bert::kSep) {
          REQUIRE(b.target[i] == -1);
          continue;
        }
        ++candidates;
        if (b.target[i] < 0) continue;
        ++masked;
        if (b.input[i] == bert::kMask) ++as_mask;
        else if (b.input[i] == b.target[i]) ++as_same;
        else ++as_random;
      }
    }
  }
  const double rate = static_cast<double>(masked) / candidates;
  INFO("masked " << masked << " of " << candidates);
  CHECK(rate > 0.145);
  CHECK(rate < 0.165);  // slightly above 0.15: every sequence predicts at least one token
  CHECK(static_cast<double>(as_mask) / masked == Approx(0.8).margin(0.01));
  CHECK(static_cast<double>(as_random + as_same) / masked == Approx(0.2).margin(0.01));
  CHECK(static_cast<double>(as_same) / masked > 0.09);

  // Each epoch visits every sequence once; seeking reproduces the stream exactly.
  bert::MlmStream a(&seqs, T, v.size(), 3, 0.15), c(&seqs, T, v.size(), 3, 0.15);
  bert::MlmBatch ba, bc;
  std::multiset<std::vector<int>> epoch0, all;
  for (const auto& s : seqs) all.insert(s.ids);
  for (std::size_t k = 0; k < seqs.size(); ++k) {
    a.next(1, ba);
    std::vector<int> ids;
    for (int t = 0; t < T && ba.valid[static_cast<std::size_t>(t)]; ++t)
      ids.push_back(ba.target[static_cast<std::size_t>(t)] >= 0 ? ba.target[static_cast<std::size_t>(t)] : ba.input[static_cast<std::size_t>(t)]);
    epoch0.insert(ids);
  }
  CHECK(epoch0 == all);
  a.next(5, ba);  // into epoch 1
  c.seek(seqs.size());
  c.next(5, bc);
  CHECK(ba.input == bc.input);
  CHECK(ba.target == bc.target);
}

TEST_CASE("the batch prefetcher yields the stream's batches in order, from any position", "[bert][data]") {
  const auto docs = bert::read_corpus(kSlice);
  const auto split = bert::split_documents(docs);
  const bert::Vocab v = bert::train_wordpiece(bert::word_counts(docs), 400);
  const auto seqs = bert::pack_sequences(docs, split, bert::Split::train, v, 32);
  for (const std::uint64_t start : {std::uint64_t(0), std::uint64_t(37)}) {
    INFO("from position " << start);
    bert::MlmStream direct(&seqs, 32, v.size(), 5, 0.15), ahead(&seqs, 32, v.size(), 5, 0.15);
    direct.seek(start);
    ahead.seek(start);
    bert::MlmBatch want, got;
    {
      bert::BatchPrefetcher p(ahead, 6, 2);
      CHECK(p.position() == start);
      // Past an epoch boundary (the slice has a few hundred sequences): the reshuffle too.
      for (int k = 0; k < 80; ++k) {
        direct.next(6, want);
        p.next(got);
        REQUIRE(got.input == want.input);
        REQUIRE(got.target == want.target);
        REQUIRE(got.valid == want.valid);
        REQUIRE(got.masked == want.masked);
        REQUIRE(got.real_tokens == want.real_tokens);
        REQUIRE(p.position() == direct.position());
      }
    }  // destroyed with batches made ahead and the producer waiting: it stops and joins
  }
  CHECK_THROWS_WITH(bert::BatchPrefetcher(bert::MlmStream(&seqs, 32, v.size(), 5, 0.15), 0), Catch::Matchers::Contains("batch and depth"));
}
