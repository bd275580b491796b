// pld-bert's training side: the model's gradients (directional finite differences per tensor),
// a tiny model learning on a fixed slice, exact resume, and every bad input the issue lists.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "bert_test_util.hpp"
#include "model.hpp"
#include "pretrain.hpp"


namespace fs = std::filesystem;

namespace {
using bert_test::fresh_dir;
using bert_test::kSlice;

// A tiny configuration: 2 layers, H = 32, sequences of 32, batches of 4.
std::vector<std::string> tiny_args(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"--corpus", kSlice, "--out", out, "--layers", "2", "--hidden", "32", "--heads", "2", "--max-len", "32",
                                "--batch", "4", "--vocab-size", "400", "--eval-every", "0", "--eval-max-seqs", "32", "--log-every", "5",
                                "--warmup", "5", "--gamma", "0.05", "--checkpoint-every", "0"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

int pretrain(const std::vector<std::string>& args, std::string* log = nullptr) {
  std::ostringstream out;
  const int rc = bert::run_pretrain(args, out);
  if (log) *log = out.str();
  return rc;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_bytes(path)); }
}  // namespace

TEST_CASE("BERT model gradients match directional finite differences, tensor by tensor", "[bert][gradcheck]") {
  const auto docs = bert::read_corpus(kSlice);
  const auto split = bert::split_documents(docs);
  const auto counts = bert::word_counts(docs);
  const bert::Vocab vocab = bert::train_wordpiece(counts, 300);
  bert::ModelConfig mc;
  mc.vocab = vocab.size();
  mc.max_len = 24;
  mc.layers = 2;
  mc.hidden = 16;
  mc.heads = 2;
  mc.dropout = 0.0f;
  mc.norm = GENERATE(pld::NormPosition::pre, pld::NormPosition::post);  // Post-LN: no final LayerNorm
  INFO("norm " << pld::to_string(mc.norm));
  bert::BertMlm model(mc);
  const auto seqs = bert::pack_sequences(docs, split, bert::Split::train, vocab, mc.max_len);
  bert::MlmStream stream(&seqs, mc.max_len, mc.vocab, 5, 0.3);
  bert::MlmBatch batch;
  stream.next(3, batch);
  pld::ScheduleSpec spec;
  spec.preset = pld::Preset::none;
  spec.num_layers = mc.layers;
  const pld::LayerPlan plan = pld::Gate(pld::make_schedule(spec)).plan(0);

  model.zero_grad();
  model.step(batch, plan, 1, true);
  for (const bert::Param& p : model.params()) {
    double gn = 0;
    for (std::size_t i = 0; i < p.size; ++i) gn += static_cast<double>(p.grad[i]) * p.grad[i];
    gn = std::sqrt(gn);
    INFO(p.name << " |grad| " << gn);
    if (gn < 1e-6) continue;  // e.g. nothing reaches it in this batch
    const std::vector<float> keep(p.value, p.value + p.size);
    const double eps = 1e-2;
    auto loss_at = [&](double t) {
      for (std::size_t i = 0; i < p.size; ++i) p.value[i] = static_cast<float>(keep[i] + t * p.grad[i] / gn);
      return model.step(batch, plan, 1, false).loss;
    };
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    std::copy(keep.begin(), keep.end(), p.value);
    CHECK(numeric == Approx(gn).epsilon(0.03));
  }
}

TEST_CASE("a tiny model's MLM loss falls on a fixed slice", "[bert][train]") {
  const std::string out = fresh_dir("learn");
  std::string log;
  REQUIRE(pretrain(tiny_args(out, {"--steps", "200", "--batch", "8", "--lr", "5e-3", "--warmup", "10", "--eval-every", "50", "--log-every", "10",
                                   "--pld", "none"}), &log) == 0);
  std::vector<double> train_loss, val_loss;
  std::ifstream metrics(out + "/metrics.jsonl");
  std::string line;
  while (std::getline(metrics, line)) {
    const auto j = nlohmann::json::parse(line);
    if (j["split"] == "train") train_loss.push_back(j["loss"].get<double>());
    else val_loss.push_back(j["mlm_loss"].get<double>());
  }
  INFO(log);
  REQUIRE(train_loss.size() == 20);
  REQUIRE(val_loss.size() == 4);
  // Starts near the uniform loss ln(400) ~ 5.99 and learns at least the token statistics of this
  // 3k-word slice (it is too small for much more: the loss levels out near 5.2).
  CHECK(train_loss.front() > std::log(400.0) - 0.3);
  CHECK(train_loss.back() < train_loss.front() - 0.5);
  CHECK(val_loss.back() < val_loss.front());
  CHECK(val_loss.back() < std::log(400.0) - 0.5);
  const auto summary = read_json(out + "/summary.json");
  CHECK(summary["steps_done"] == 200);
  CHECK(summary["validation_mlm_accuracy"].get<double>() > 0.02);
}

TEST_CASE("resume continues exactly: 2N steps == N steps + N resumed, bit for bit", "[bert][resume]") {
  for (const std::string opt : {"adamw", "lamb"}) {
    INFO("optimizer " << opt);
    const std::string a = fresh_dir("resume-a-" + opt), b = fresh_dir("resume-b-" + opt);
    const std::vector<std::string> common = {"--steps", "24", "--optimizer", opt, "--pld", "pld", "--sampling", "fixed_count", "--skip-dropped-updates"};
    auto with = [&](std::vector<std::string> more) {
      std::vector<std::string> v = common;
      v.insert(v.end(), more.begin(), more.end());
      return v;
    };
    REQUIRE(pretrain(tiny_args(a, with({}))) == 0);
    REQUIRE(pretrain(tiny_args(b, with({"--stop-at", "12"}))) == 0);
    const bert::Checkpoint half = bert::read_checkpoint(b + "/checkpoint.bin");
    CHECK(half.step == 12);
    std::string log;
    REQUIRE(pretrain(tiny_args(b, with({"--resume", "auto"})), &log) == 0);
    CHECK(log.find("resumed from") != std::string::npos);
    const bert::Checkpoint ca = bert::read_checkpoint(a + "/checkpoint.bin"), cb = bert::read_checkpoint(b + "/checkpoint.bin");
    CHECK(ca.step == 24);
    CHECK(cb.step == 24);
    CHECK(ca.data_position == cb.data_position);
    // The controller's position and totals agree; only its wall-clock total may differ.
    const pld::ControllerState sa = pld::parse_state(ca.controller_state), sb = pld::parse_state(cb.controller_state);
    CHECK(sa.stats.step == sb.stats.step);
    CHECK(sa.stats.steps_done == sb.stats.steps_done);
    CHECK(sa.stats.realised_work == sb.stats.realised_work);
    CHECK(sa.stats.expected_work == sb.stats.expected_work);
    CHECK(sa.stats.tokens == sb.stats.tokens);
    CHECK(sa.stats.last_loss == sb.stats.last_loss);
    REQUIRE(ca.names == cb.names);
    bool same = true;
    for (std::size_t i = 0; i < ca.names.size(); ++i)
      same = same && ca.values[i] == cb.values[i] && ca.m[i] == cb.m[i] && ca.v[i] == cb.v[i] && ca.opt_steps[i] == cb.opt_steps[i];
    CHECK(same);
    CHECK(ca.values != half.values);  // the second half did train
    // metrics.jsonl of the resumed run has each step once.
    std::ifstream m(b + "/metrics.jsonl");
    std::string line;
    std::vector<std::int64_t> steps;
    while (std::getline(m, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j["split"] == "train") steps.push_back(j["step"].get<std::int64_t>());
    }
    CHECK(steps == std::vector<std::int64_t>{5, 10, 12, 15, 20, 24});
    // The summary's train_s is this process's (12 steps), train_s_total the whole run's: it adds
    // the first process's time from the checkpoint, and equals the last metrics record's.
    std::ifstream sf(b + "/summary.json");
    const auto summary = nlohmann::json::parse(sf);
    const double total = summary.at("train_s_total").get<double>(), part = summary.at("train_s").get<double>();
    CHECK(total == Approx(half.elapsed_seconds + part).epsilon(1e-9));
    CHECK(total > part);
  }
}

TEST_CASE("bad input gives one clear error and keeps a good checkpoint", "[bert][errors]") {
  const std::string out = fresh_dir("errors");
  REQUIRE(pretrain(tiny_args(out, {"--steps", "4"})) == 0);
  const std::string ckpt = out + "/checkpoint.bin";
  const std::string good = read_bytes(ckpt);
  REQUIRE(good.size() > 1000);
  auto fails_with = [&](std::vector<std::string> args, const std::string& what) {
    INFO("expecting: " << what);
    CHECK_THROWS_WITH(pretrain(args), Catch::Matchers::Contains(what));
    CHECK(read_bytes(ckpt) == good);  // never overwritten
  };
  const std::string other = fresh_dir("errors-other");
  fails_with(tiny_args(other, {"--corpus", kSlice + "/no-such-dir"}), "does not exist");
  const std::string empty = fresh_dir("errors-empty") + ".txt";
  std::ofstream(empty) << "\n\n";
  fails_with(tiny_args(other, {"--corpus", empty}), "is empty");
  fails_with(tiny_args(other, {"--vocab", other + "/missing-vocab.txt"}), "cannot read vocabulary");
  fails_with(tiny_args(out, {"--steps", "8"}), "exists: pass --resume auto");
  fails_with(tiny_args(out, {"--steps", "8", "--resume", "auto", "--hidden", "64"}), "another configuration: hidden");
  fails_with(tiny_args(out, {"--steps", "8", "--resume", "auto", "--pld", "random"}), "another configuration: pld");
  fails_with(tiny_args(out, {"--steps", "3", "--resume", "auto"}), "at step 4, past --steps 3");
  {
    // At exactly --steps the run is finished, not refused (a kill between the last checkpoint and
    // the summary): no step, the logged final evaluation, a summary, the checkpoint untouched.
    const std::string summary_path = out + "/summary.json";
    const auto before = nlohmann::json::parse(read_bytes(summary_path));
    fs::remove(summary_path);
    std::string log;
    REQUIRE(pretrain(tiny_args(out, {"--steps", "4", "--resume", "auto"}), &log) == 0);
    CHECK_THAT(log, Catch::Matchers::Contains("no training left"));
    CHECK(read_bytes(ckpt) == good);
    const auto after = nlohmann::json::parse(read_bytes(summary_path));
    CHECK(after.at("steps_done") == 4);
    CHECK(after.at("steps_this_process") == 0);
    CHECK(after.at("validation_mlm_loss").get<double>() == before.at("validation_mlm_loss").get<double>());
  }
  // Nonsense flag values and unknown options.
  fails_with(tiny_args(other, {"--batch", "0"}), "--batch must be in 1..");
  fails_with(tiny_args(other, {"--lr", "abc"}), "--lr must be a number");
  fails_with(tiny_args(other, {"--pld", "sometimes"}), "--pld must be one of none, pld, random, td_only, dd_only");
  fails_with(tiny_args(other, {"--theta-bar", "1.5"}), "--theta-bar must be in [0, 1]");
  fails_with(tiny_args(other, {"--hidden", "30", "--heads", "4"}), "divisible");
  fails_with(tiny_args(other, {"--frobnicate", "1"}), "unknown option --frobnicate");
  fails_with(tiny_args(other, {"--keep-ratio", "0.5"}), "--keep-ratio applies to --pld random only");
  fails_with(tiny_args(other, {"--steps"}), "--steps needs a value");
  const std::string cfg = other + "-config.json";
  std::ofstream(cfg) << "{\"batch\": 4, \"lr\": ";
  fails_with(tiny_args(other, {"--config", cfg}), "is not valid JSON");

  // Corrupt and truncated checkpoints, resumed explicitly.
  const std::string bad = out + "/bad.bin";
  std::string flipped = good;
  flipped[flipped.size() / 2] = static_cast<char>(flipped[flipped.size() / 2] ^ 0x40);
  std::ofstream(bad, std::ios::binary) << flipped;
  fails_with(tiny_args(out, {"--steps", "8", "--resume", bad}), "checksum mismatch");
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() - 100);
  fails_with(tiny_args(out, {"--steps", "8", "--resume", bad}), "truncated");
  std::ofstream(bad, std::ios::binary | std::ios::trunc) << "hello";
  fails_with(tiny_args(out, {"--steps", "8", "--resume", bad}), "not a pld-bert checkpoint");
  fails_with(tiny_args(out, {"--steps", "8", "--resume", out + "/nothing.bin"}), "cannot read checkpoint");

  // And the good one still resumes.
  REQUIRE(pretrain(tiny_args(out, {"--steps", "8", "--resume", "auto"})) == 0);
  CHECK(bert::read_checkpoint(ckpt).step == 8);
}

TEST_CASE("a JSON config file sets options and flags override it", "[bert][options]") {
  bert::Options o("pretrain", bert::pretrain_option_specs());
  const std::string cfg = fresh_dir("cfg") + ".json";
  std::ofstream(cfg) << R"({"batch": 8, "lr": 0.0005, "skip-dropped-updates": true, "pld": "random"})";
  o.parse({"--config", cfg, "--batch", "12"});
  CHECK(o.integer("batch", 1, 100) == 12);
  CHECK(o.real("lr", 0, 1) == Approx(5e-4));
  CHECK(o.boolean("skip-dropped-updates"));
  CHECK(o.str("pld") == "random");
  CHECK(o.help().find("--skip-dropped-updates") != std::string::npos);
  for (const auto& s : bert::pretrain_option_specs()) CHECK_FALSE(s.help.empty());
  bert::Options bad("pretrain", bert::pretrain_option_specs());
  std::ofstream(cfg, std::ios::trunc) << R"({"bogus": 1})";
  CHECK_THROWS_WITH(bad.parse({"--config", cfg}), Catch::Matchers::Contains("unknown option --bogus"));
}

TEST_CASE("per-sample gating trains through evaluation and checkpoints", "[bert][hardening]") {
  // Every evaluation once failed in per-sample mode ("needs the batch size"), losing the run.
  const std::string out = fresh_dir("per-sample-eval");
  std::string log;
  REQUIRE(pretrain(tiny_args(out, {"--granularity", "sample", "--steps", "10", "--eval-every", "5", "--checkpoint-every", "5"}), &log) == 0);
  CHECK(log.find("eval step 5") != std::string::npos);
  CHECK(bert::read_checkpoint(out + "/checkpoint.bin").step == 10);
  CHECK(read_json(out + "/summary.json").contains("validation_mlm_loss"));
}

TEST_CASE("a run never overwrites another run's files", "[bert][hardening]") {
  const std::string a = fresh_dir("own-a"), b = fresh_dir("own-b");
  REQUIRE(pretrain(tiny_args(a, {"--steps", "4"})) == 0);
  REQUIRE(pretrain(tiny_args(b, {"--steps", "4", "--seed", "2"})) == 0);
  std::map<std::string, std::string> before;
  for (const char* f : {"checkpoint.bin", "options.json", "summary.json", "metrics.jsonl", "vocab.txt"}) before[f] = read_bytes(b + "/" + f);
  auto unchanged = [&] {
    for (const auto& [f, bytes] : before) CHECK(read_bytes(b + "/" + f) == bytes);
  };
  // --resume of run a's checkpoint into run b's directory.
  CHECK_THROWS_WITH(pretrain(tiny_args(b, {"--steps", "8", "--resume", a + "/checkpoint.bin"})), Catch::Matchers::Contains("holds another run"));
  unchanged();
  // --stop-at before the checkpoint's step (it once ran, "finished", and wrote -N steps).
  CHECK_THROWS_WITH(pretrain(tiny_args(b, {"--steps", "8", "--seed", "2", "--resume", "auto", "--stop-at", "3"})),
                    Catch::Matchers::Contains("--stop-at 3 is not after"));
  unchanged();
  // A fresh run into a directory with another run's metrics but no checkpoint.
  const std::string c = fresh_dir("own-c");
  std::filesystem::create_directories(c);
  std::ofstream(c + "/metrics.jsonl") << "{\"step\": 1}\n";
  CHECK_THROWS_WITH(pretrain(tiny_args(c, {"--steps", "4"})), Catch::Matchers::Contains("holds another run"));
  CHECK(read_bytes(c + "/metrics.jsonl") == "{\"step\": 1}\n");
  // Resuming run a's checkpoint into an empty directory forks it: allowed.
  const std::string fork = fresh_dir("own-fork");
  REQUIRE(pretrain(tiny_args(fork, {"--steps", "8", "--resume", a + "/checkpoint.bin", "--vocab", a + "/vocab.txt"})) == 0);
  CHECK(bert::read_checkpoint(fork + "/checkpoint.bin").step == 8);
}

TEST_CASE("a refused run writes nothing", "[bert][hardening]") {
  namespace fs = std::filesystem;
  // --theta-bar 0 was once refused only after the vocabulary had been trained and saved.
  const std::string d1 = fresh_dir("refused-theta");
  CHECK_THROWS_WITH(pretrain(tiny_args(d1, {"--theta-bar", "0"})), Catch::Matchers::Contains("theta_bar"));
  CHECK_FALSE(fs::exists(d1));
  // A checkpoint of another configuration, resumed into a new directory.
  const std::string src = fresh_dir("refused-src");
  REQUIRE(pretrain(tiny_args(src, {"--steps", "2"})) == 0);
  const std::string d2 = fresh_dir("refused-other-config");
  CHECK_THROWS_WITH(pretrain(tiny_args(d2, {"--steps", "4", "--hidden", "64", "--resume", src + "/checkpoint.bin"})),
                    Catch::Matchers::Contains("another configuration"));
  CHECK_FALSE(fs::exists(d2));
  // A corpus whose training split is empty.
  const std::string tiny_corpus = fresh_dir("refused-corpus") + ".txt";
  std::ofstream(tiny_corpus) << "a b\n\nc d\n";
  const std::string d3 = fresh_dir("refused-small");
  CHECK_THROWS(pretrain(tiny_args(d3, {"--corpus", tiny_corpus})));
  CHECK_FALSE(fs::exists(d3));
}

TEST_CASE("noise is refused unless asked for", "[bert][hardening]") {
  namespace fs = std::filesystem;
  // Random bytes as the corpus once trained silently to "accuracy 0.67".
  const std::string noise = fresh_dir("noise-corpus") + ".bin";
  {
    std::ofstream f(noise, std::ios::binary);
    for (std::uint32_t i = 0; i < 200000; ++i) f.put(static_cast<char>(pld::philox4x32_10(pld::U32x4{{i, 0, 0, 0}}, pld::U32x2{{7, 0}}).v[0] & 0xFF));
  }
  const std::string d = fresh_dir("noise");
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--corpus", noise})), Catch::Matchers::Contains("does not look like text"));
  CHECK_FALSE(fs::exists(d));
  // A vocabulary of the special tokens and one word: nearly everything is [UNK].
  const std::string vocab = fresh_dir("noise-vocab") + ".txt";
  std::ofstream(vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\n";
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--vocab", vocab, "--steps", "2"})), Catch::Matchers::Contains("are [UNK]"));
  CHECK_FALSE(fs::exists(d));
  REQUIRE(pretrain(tiny_args(d, {"--vocab", vocab, "--steps", "2", "--allow-noisy-corpus"})) == 0);  // the override
  // Text with a few stray bytes is still text.
  CHECK(bert::non_text_bytes("plain words\tand\nlines \xC3\xA9t\xC3\xA9") == 0u);
  CHECK(bert::non_text_bytes(std::string("a\0b\x01" "c\xFF\xC3", 7)) == 4u);  // NUL, SOH, a stray byte, a cut sequence
}

TEST_CASE("smaller defects: a directory as checkpoint, huge seeds, duplicate keys, divergence", "[bert][hardening]") {
  const std::string d = fresh_dir("small-defects");
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--resume", bert_test::kSlice})), Catch::Matchers::Contains("is a directory"));
  const std::string cfg = fresh_dir("small-defects-cfg") + ".json";
  std::ofstream(cfg) << R"({"seed": 18446744073709551615})";
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--config", cfg})), Catch::Matchers::Contains("got 18446744073709551615"));
  std::ofstream(cfg, std::ios::trunc) << R"({"batch": 4, "lr": 0.001, "batch": 8})";
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--config", cfg})), Catch::Matchers::Contains("gives 'batch' more than once"));
  // Divergence: --lr 10 once ran to a loss of 734 without a word. Here the run stops at its first
  // step above the bound, keeps the last checkpoint, and writes no later one.
  std::string log;
  CHECK_THROWS_WITH(pretrain(tiny_args(d, {"--lr", "10", "--warmup", "10", "--steps", "30", "--checkpoint-every", "1"}), &log),
                    Catch::Matchers::Contains("training diverged at step") && Catch::Matchers::Contains("is kept"));
  const bert::Checkpoint kept = bert::read_checkpoint(d + "/checkpoint.bin");
  CHECK(kept.step >= 1);
  CHECK(kept.step < 30);
  const std::string d2 = fresh_dir("small-defects-maxloss");
  CHECK_THROWS_WITH(pretrain(tiny_args(d2, {"--max-loss", "0.5", "--steps", "4"})),
                    Catch::Matchers::Contains("above --max-loss 0.5") && Catch::Matchers::Contains("no checkpoint was written"));
}

TEST_CASE("a checkpoint with an empty tensor round-trips (a fuzzing finding)", "[bert][hardening]") {
  // The reader once passed an empty vector's null data() to memcpy (undefined behaviour, caught
  // by UndefinedBehaviorSanitizer under libFuzzer: scripts/fuzz.sh).
  bert::Checkpoint c;
  c.key = "{}";
  c.names = {"empty", "one"};
  c.values = {{}, {1.5f}};
  c.m = {{}, {0.25f}};
  c.v = {{}, {0.125f}};
  c.opt_steps = {0, 3};
  const std::string bytes = bert::serialize_checkpoint(c);
  const bert::Checkpoint back = bert::parse_checkpoint(bytes, "test");
  CHECK(back.values == c.values);
  CHECK(back.m == c.m);
  CHECK(back.v == c.v);
  CHECK(bert::serialize_checkpoint(back) == bytes);
}

TEST_CASE("checkpoint versions: 1 without a trainer state, 2 with one, one encoding each (a fuzzing finding)", "[bert][hardening]") {
  bert::Checkpoint c;
  c.key = "{}";
  c.names = {"w"};
  c.values = {{1.0f, 2.0f}};
  c.m = {{0.5f, 0.5f}};
  c.v = {{0.25f, 0.25f}};
  c.opt_steps = {4};
  auto version_of = [](const std::string& bytes) {
    std::uint32_t v = 0;
    std::memcpy(&v, bytes.data() + sizeof bert::kCheckpointMagic, sizeof v);
    return v;
  };
  const std::string v1 = bert::serialize_checkpoint(c);
  CHECK(version_of(v1) == 1);  // what every CPU run writes, as before version 2 existed
  c.trainer_state = "pld-loss-scale 1 65536 12 3";
  const std::string v2 = bert::serialize_checkpoint(c);
  CHECK(version_of(v2) == 2);
  const bert::Checkpoint back = bert::parse_checkpoint(v2, "test");
  CHECK(back.trainer_state == c.trainer_state);
  CHECK(bert::serialize_checkpoint(back) == v2);
  CHECK(bert::parse_checkpoint(v1, "test").trainer_state.empty());
  // Version 2 with an empty trainer state would write back as version 1: refused, so every
  // accepted file round-trips to its own bytes (the checkpoint fuzzer found the second encoding).
  std::string payload = v2.substr(sizeof bert::kCheckpointMagic + 12, v2.size() - sizeof bert::kCheckpointMagic - 12 - 8);
  const std::uint64_t state_size = c.trainer_state.size();  // a string record: u64 length, bytes
  const std::string state_record = std::string(reinterpret_cast<const char*>(&state_size), sizeof state_size) + c.trainer_state;
  const std::size_t at = payload.find(state_record);
  REQUIRE(at != std::string::npos);
  payload.replace(at, state_record.size(), std::string(8, '\0'));  // the same record, empty
  std::string framed(bert::kCheckpointMagic, sizeof bert::kCheckpointMagic);
  const std::uint32_t version = 2;
  const std::uint64_t n = payload.size(), sum = pld::detail::fnv1a64(payload);
  framed.append(reinterpret_cast<const char*>(&version), sizeof version);
  framed.append(reinterpret_cast<const char*>(&n), sizeof n);
  framed += payload;
  framed.append(reinterpret_cast<const char*>(&sum), sizeof sum);
  CHECK_THROWS_WITH(bert::parse_checkpoint(framed, "v2.bin"), Catch::Contains("version 2 with an empty trainer state"));
  // A version this program does not know.
  std::string v9 = v1;
  const std::uint32_t nine = 9;
  std::memcpy(&v9[sizeof bert::kCheckpointMagic], &nine, sizeof nine);
  CHECK_THROWS_WITH(bert::parse_checkpoint(v9, "v9.bin"), Catch::Contains("reads versions 1 to 2"));
}

TEST_CASE("validation masks do not depend on the run's seed, and the loss reference lines", "[bert][ablation]") {
  // Two seeds evaluate the same masked tokens (seed spreads are then training variance alone).
  const std::string a = fresh_dir("valkey-a"), b = fresh_dir("valkey-b");
  REQUIRE(pretrain(tiny_args(a, {"--steps", "3", "--seed", "1"})) == 0);
  REQUIRE(pretrain(tiny_args(b, {"--steps", "3", "--seed", "2"})) == 0);
  auto masked = [](const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::string line;
    std::int64_t n = -1;
    while (std::getline(in, line)) {
      const auto j = nlohmann::json::parse(line);
      if (j["split"] == "validation") n = j["masked_tokens"].get<std::int64_t>();
    }
    return n;
  };
  CHECK(masked(a) > 0);
  CHECK(masked(a) == masked(b));
  CHECK(read_json(a + "/summary.json")["validation_unigram_loss"] == read_json(b + "/summary.json")["validation_unigram_loss"]);
  // The unigram line by hand: training tokens a a b (ids 5 5 6), V = 8: p(a) = (2 + 1) / (3 + 3).
  std::vector<bert::Sequence> train(1);
  train[0].ids = {bert::kCls, 5, 5, 6, bert::kSep};
  const bert::LossReferences r = bert::loss_references(train, {5, 7}, 8);
  CHECK(r.unigram == Approx(-(std::log(3.0 / 6.0) + std::log(1.0 / 6.0)) / 2));
  CHECK(r.uniform == Approx(std::log(8.0)));
}
