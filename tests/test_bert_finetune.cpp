// pld-bert finetune: the coarse POS mapping, the held-out split, a tiny model learning POS tags
// above the majority class, genre passages, and bad input.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "bert_test_util.hpp"
#include "finetune.hpp"


namespace fs = std::filesystem;

namespace {
using bert_test::fresh_dir;
using bert_test::kSlice;

// A tiny pretrained model (shared by the cases below; pretraining takes well under a second).
const std::string& tiny_checkpoint() {
  static const std::string path = [] {
    const std::string out = fresh_dir("ft-pretrain");
    std::ostringstream log;
    const std::vector<std::string> args = {"--corpus", kSlice, "--out", out, "--layers", "2", "--hidden", "32", "--heads", "2", "--max-len", "32",
                                           "--batch", "8", "--vocab-size", "400", "--steps", "40", "--eval-every", "0", "--eval-max-seqs", "16",
                                           "--checkpoint-every", "0", "--lr", "3e-3", "--warmup", "5"};
    if (bert::run_pretrain(args, log) != 0) throw std::runtime_error("tiny pretraining failed");
    return out + "/checkpoint.bin";
  }();
  return path;
}

nlohmann::json finetune(const std::string& task, std::vector<std::string> extra = {}) {
  const std::string out = fresh_dir("ft-" + task);
  std::vector<std::string> args = {"--task", task, "--corpus", kSlice, "--checkpoint", tiny_checkpoint(), "--out", out, "--epochs", "8",
                                   "--batch", "8", "--lr", "3e-3", "--log-every", "1000"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::ostringstream log;
  REQUIRE(bert::run_finetune(args, log) == 0);
  std::ifstream in(out + "/summary.json");
  return nlohmann::json::parse(in);
}
}  // namespace

TEST_CASE("Brown tags map to the coarse tag set", "[bert][finetune]") {
  auto tag = [](const char* t) { return bert::pos_labels()[static_cast<std::size_t>(bert::coarse_pos(t))]; };
  CHECK(tag("nn") == "NOUN");
  CHECK(tag("nns$") == "NOUN");
  CHECK(tag("np-tl") == "NOUN");
  CHECK(tag("nn-tl-hl") == "NOUN");
  CHECK(tag("vbd") == "VERB");
  CHECK(tag("bedz") == "VERB");
  CHECK(tag("md") == "VERB");
  CHECK(tag("jj") == "ADJ");
  CHECK(tag("od") == "ADJ");
  CHECK(tag("rb") == "ADV");
  CHECK(tag("*") == "ADV");
  CHECK(tag("ql") == "ADV");
  CHECK(tag("pps") == "PRON");
  CHECK(tag("ex") == "PRON");
  CHECK(tag("at") == "DET");
  CHECK(tag("dti") == "DET");
  CHECK(tag("wdt") == "DET");
  CHECK(tag("in") == "ADP");
  CHECK(tag("in-tl") == "ADP");
  CHECK(tag("cd") == "NUM");
  CHECK(tag("cc") == "CONJ");
  CHECK(tag("cs") == "CONJ");
  CHECK(tag("to") == "PRT");
  CHECK(tag("rp") == "PRT");
  CHECK(tag(".") == ".");
  CHECK(tag("``") == ".");
  CHECK(tag("--") == ".");
  CHECK(tag("fw-nn") == "X");
  CHECK(tag("uh") == "X");
  CHECK(tag("nn+bez") == "NOUN");
}

TEST_CASE("held-out documents split into fine-tuning train and test by document", "[bert][finetune]") {
  const auto docs = bert::read_corpus(kSlice);
  const auto split = bert::split_documents(docs);
  const auto ft = bert::finetune_split(docs, split);
  int train = 0, test = 0;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    if (split[i] != bert::Split::heldout) {
      CHECK(ft[i] == -1);
      continue;
    }
    (ft[i] == 1 ? test : train) += 1;
  }
  CHECK(train == 2);  // 2 held-out documents per genre here: one train, one test
  CHECK(test == 2);
  const bert::Vocab v = bert::Vocab::load(fs::path(tiny_checkpoint()).parent_path().string() + "/vocab.txt");
  for (const auto& s : bert::pos_sequences(docs, split, ft, 0, v, 32)) {
    REQUIRE(s.ids.size() == s.labels.size());
    REQUIRE(s.ids.size() <= 32u);
    REQUIRE(s.labels.front() == -1);
    REQUIRE(s.labels.back() == -1);
  }
  for (const auto& s : bert::genre_sequences(docs, split, ft, 1, v, 32)) {
    REQUIRE(s.labels[0] >= 0);
    REQUIRE(bert::genre_labels()[static_cast<std::size_t>(s.labels[0])] == docs[static_cast<std::size_t>(s.document)].genre);
    for (std::size_t t = 1; t < s.labels.size(); ++t) REQUIRE(s.labels[t] == -1);
  }
}

TEST_CASE("fine-tuning a tiny model learns POS tags above the majority class", "[bert][finetune]") {
  const auto s = finetune("pos");
  INFO(s.dump());
  CHECK(s["test_count"].get<int>() > 200);
  CHECK(s["test_accuracy"].get<double>() > s["majority_class_accuracy"].get<double>() + 0.15);
}

TEST_CASE("genre fine-tuning runs end to end and reports accuracy and macro-F1", "[bert][finetune]") {
  const auto s = finetune("genre");
  INFO(s.dump());
  const double acc = s["test_accuracy"].get<double>(), f1 = s["test_macro_f1"].get<double>();
  CHECK(acc >= 0.0);
  CHECK(acc <= 1.0);
  CHECK(f1 >= 0.0);
  CHECK(f1 <= 1.0);
  CHECK(s["test_count"].get<int>() > 10);
}

TEST_CASE("fine-tuning refuses bad input with one clear error", "[bert][finetune][errors]") {
  std::ostringstream log;
  const std::string out = fresh_dir("ft-errors");
  auto run = [&](std::vector<std::string> args) { return bert::run_finetune(args, log); };
  CHECK_THROWS_WITH(run({"--task", "pos", "--corpus", kSlice, "--out", out}), Catch::Matchers::Contains("--checkpoint is required"));
  CHECK_THROWS_WITH(run({"--task", "pos", "--corpus", kSlice, "--out", out, "--checkpoint", out + "/missing.bin"}),
                    Catch::Matchers::Contains("cannot read checkpoint"));
  CHECK_THROWS_WITH(run({"--task", "ner", "--checkpoint", tiny_checkpoint()}), Catch::Matchers::Contains("--task must be one of genre, pos"));
  const std::string other_vocab = out + "-vocab.txt";
  std::ofstream(other_vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n";
  CHECK_THROWS_WITH(run({"--task", "pos", "--corpus", kSlice, "--out", out, "--checkpoint", tiny_checkpoint(), "--vocab", other_vocab}),
                    Catch::Matchers::Contains("is not the one checkpoint"));
  const std::string plain = out + "-plain.txt";
  std::ofstream(plain) << "one document here\n\nanother one\n\nthird\n\nfourth\n\nfifth\n\nsixth\n\nseventh\n\neighth\n\nninth\n\ntenth\n";
  CHECK_THROWS_WITH(run({"--task", "pos", "--corpus", plain, "--out", out, "--checkpoint", tiny_checkpoint()}),
                    Catch::Matchers::Contains("needs a tagged corpus"));
}

TEST_CASE("fine-tuning never writes into another run's directory", "[bert][finetune][errors]") {
  // Pointed at the pretraining run's own directory, it once replaced that run's metrics.jsonl and
  // summary.json.
  const std::string dir = std::filesystem::path(tiny_checkpoint()).parent_path().string();
  const auto read = [](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string metrics = read(dir + "/metrics.jsonl"), summary = read(dir + "/summary.json");
  REQUIRE_FALSE(summary.empty());
  std::ostringstream log;
  const std::vector<std::string> args = {"--task", "pos", "--corpus", kSlice, "--checkpoint", tiny_checkpoint(), "--out", dir, "--epochs", "1"};
  CHECK_THROWS_WITH(bert::run_finetune(args, log), Catch::Matchers::Contains("holds another run"));
  CHECK(read(dir + "/metrics.jsonl") == metrics);
  CHECK(read(dir + "/summary.json") == summary);
}
