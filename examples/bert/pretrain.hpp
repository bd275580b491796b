// `pld-bert pretrain`: MLM pretraining with PLD on the CPU or a GPU, with evaluation, checkpoints,
// exact resume, a progress line, metrics.jsonl and a summary. The loop is written once over a
// Trainer (trainer.hpp): the CPU's (cpu_trainer.hpp) or the GPU's (cuda_trainer.cuh).
#pragma once

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint.hpp"
#include "corpus.hpp"
#include "dataset.hpp"
#include "mlm_data.hpp"
#include "optimizer.hpp"
#include "options.hpp"
#include "run_dir.hpp"
#include "pld/dist/communicator.hpp"
#include "pld/pld.hpp"
#include "run_config.hpp"
#include "tokenizer.hpp"
#include "trainer.hpp"

namespace bert {

inline std::string format_duration(double s) {
  char b[32];
  if (s < 60) std::snprintf(b, sizeof b, "%.0fs", s);
  else if (s < 3600) std::snprintf(b, sizeof b, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(b, sizeof b, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  return b;
}

// A number in the shortest form that reads well in a message (4 significant digits).
inline std::string format_number(double x) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", x);
  return b;
}

// The engine for options.json and summary.json, with the kernel oneDNN chose for the last product.
inline nlohmann::json engine_info(Trainer& t) {
  const EngineInfo e = t.engine();
  nlohmann::json j = {{"device", e.device}, {"library", e.library}, {"precision", e.precision}};
  j[e.device == "cpu" ? "isa" : "gpu"] = e.processor;
  if (!e.kernel.empty() || e.device == "cpu") j["kernel"] = e.kernel;
  return j;
}

struct EvalResult {
  double loss = 0.0, accuracy = 0.0;
  int predicted = 0;
};

// The key of the validation masks: fixed, not the run's seed, so every run (and every seed of an
// ablation row) is evaluated on the same masked tokens and seed spreads are training variance.
inline constexpr std::uint64_t kValidationMaskKey = 0x5eedULL;

// The validation masks' targets: the tokens an evaluation of the first `max_seqs` sequences
// predicts (the same positions evaluate_mlm masks).
inline std::vector<int> validation_targets(const std::vector<Sequence>& seqs, std::size_t max_seqs, int max_len, int vocab_size,
                                           double mask_prob) {
  const std::size_t n = max_seqs == 0 ? seqs.size() : std::min(max_seqs, seqs.size());
  std::vector<int> out;
  MlmBatch b;
  b.batch = 1;
  b.seq = max_len;
  b.input.resize(static_cast<std::size_t>(max_len));
  b.target.resize(b.input.size());
  b.valid.resize(b.input.size());
  for (std::size_t i = 0; i < n; ++i) {
    mask_into(seqs[i], kValidationMaskKey, 0, static_cast<std::uint32_t>(i), vocab_size, mask_prob, b, 0);
    for (int t : b.target)
      if (t >= 0) out.push_back(t);
  }
  return out;
}

// Reference lines for the validation MLM loss: the cross-entropy of the validation targets under
// the training split's unigram token frequencies (add-one smoothed over the V - 5 ordinary
// tokens: what a model that learned only token frequencies scores), and ln V (a uniform guess).
struct LossReferences {
  double unigram = 0.0, uniform = 0.0;
};
inline LossReferences loss_references(const std::vector<Sequence>& train, const std::vector<int>& targets, int vocab_size) {
  std::vector<double> count(static_cast<std::size_t>(vocab_size), 0.0);
  double total = 0.0;
  for (const auto& s : train)
    for (std::size_t i = 1; i + 1 < s.ids.size(); ++i) {  // not [CLS] / [SEP]
      count[static_cast<std::size_t>(s.ids[i])] += 1.0;
      total += 1.0;
    }
  LossReferences r;
  r.uniform = std::log(static_cast<double>(vocab_size));
  double ce = 0.0;
  for (int t : targets) ce -= std::log((count[static_cast<std::size_t>(t)] + 1.0) / (total + static_cast<double>(vocab_size - kNumSpecial)));
  r.unigram = targets.empty() ? 0.0 : ce / static_cast<double>(targets.size());
  return r;
}

// MLM loss and accuracy on validation sequences, all layers kept, no dropout, fixed masking (a
// sequence's masks follow from its index). With `ranks` (data parallel), the batches are dealt
// round-robin over them and the sums added: every rank gets the one-process result (the same
// batches, each evaluated once; only the order of the final additions differs).
inline EvalResult evaluate_mlm(Trainer& model, const std::vector<Sequence>& seqs, std::size_t max_seqs, int batch, int max_len,
                               int vocab_size, std::uint64_t seed, double mask_prob, const pld::Gate& gate, std::int64_t step,
                               pld::dist::Communicator* ranks = nullptr) {
  const std::size_t n = max_seqs == 0 ? seqs.size() : std::min(max_seqs, seqs.size());
  const pld::LayerPlan plan = gate.plan(step, /*training=*/false);
  const std::size_t world = ranks ? static_cast<std::size_t>(ranks->size()) : 1, rank = ranks ? static_cast<std::size_t>(ranks->rank()) : 0;
  EvalResult r;
  double loss_sum = 0.0;
  int correct = 0;
  MlmBatch b;
  for (std::size_t i = 0, j = 0; i < n; i += static_cast<std::size_t>(batch), ++j) {
    if (j % world != rank) continue;  // another rank's batch
    const int rows = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch), n - i));
    b.batch = rows;
    b.seq = max_len;
    const auto cells = static_cast<std::size_t>(rows) * static_cast<std::size_t>(max_len);
    b.input.resize(cells);
    b.target.resize(cells);
    b.valid.resize(cells);
    b.masked = 0;
    b.real_tokens = 0;
    for (int k = 0; k < rows; ++k)
      mask_into(seqs[i + static_cast<std::size_t>(k)], kValidationMaskKey, 0, static_cast<std::uint32_t>(i + static_cast<std::size_t>(k)), vocab_size,
                mask_prob, b, k);
    const MlmResult m = model.step(b, plan, seed, /*backward=*/false);
    loss_sum += m.loss * m.predicted;
    correct += m.correct;
    r.predicted += m.predicted;
  }
  if (world > 1) {
    double sums[3] = {loss_sum, static_cast<double>(correct), static_cast<double>(r.predicted)};
    ranks->sum_now(sums, 3);
    loss_sum = sums[0];
    correct = static_cast<int>(sums[1]);
    r.predicted = static_cast<int>(sums[2]);
  }
  if (r.predicted > 0) {
    r.loss = loss_sum / r.predicted;
    r.accuracy = static_cast<double>(correct) / r.predicted;
  }
  return r;
}

// Keeps the lines of metrics.jsonl whose "step" is <= `step` (a resumed run rewrites the rest).
inline void truncate_metrics(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string kept, line;
  while (std::getline(in, line)) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("step", std::int64_t(0)) <= step) kept += line + "\n";
    } catch (const std::exception&) {
      // a torn last line from a crash: dropped
    }
  }
  in.close();
  write_file_atomically(path, kept);
}

// The validation result logged in metrics.jsonl at `step`, if there is one.
inline std::optional<EvalResult> logged_evaluation(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  std::string line;
  std::optional<EvalResult> found;
  while (std::getline(in, line)) {
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("split", "") != "validation" || j.value("step", std::int64_t(-1)) != step) continue;
      EvalResult e;
      e.loss = j.at("mlm_loss").get<double>();
      e.accuracy = j.at("mlm_accuracy").get<double>();
      e.predicted = j.at("masked_tokens").get<decltype(e.predicted)>();
      found = e;
    } catch (const std::exception&) {
      // a torn or foreign line: not a logged evaluation
    }
  }
  return found;
}

// `comm`: the ranks of a data-parallel run (mpirun -np N pld-bert pretrain ...); null or one rank
// is the ordinary run. Every rank runs the same checks and holds the whole model; each global
// batch of --batch sequences is split into equal shards; the gradients are averaged through
// pld::dist::GradientReducer (a layer the plan dropped sends nothing); rank 0 alone logs and writes.
// `cuda`: makes the GPU trainer for --device cuda (make_cuda_trainer in a pld-bert built with
// CUDA); without one, --device cuda is refused.
int run_pretrain(const std::vector<std::string>& args, std::ostream& out_arg, pld::dist::Communicator* comm_arg = nullptr,
                 const TrainerFactory& cuda = nullptr);

}  // namespace bert
