// `pld-bert finetune`: genre classification or POS tagging from a pretraining checkpoint, on the
// documents held out from pretraining. All layers run (no dropping) in fine-tuning and evaluation.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "finetune_data.hpp"
#include "pretrain.hpp"

namespace bert {

inline std::vector<OptionSpec> finetune_option_specs() {
  return {
      {"config", "", "JSON file of option values; flags override it"},
      {"task", "genre", "genre (passage -> one of 15 Brown genres; accuracy, macro-F1) or pos (coarse POS per word; accuracy)"},
      {"checkpoint", "", "pretraining checkpoint.bin to start from, or 'none' for a randomly initialised encoder (a baseline)"},
      {"corpus", default_corpus_dir(), "the Brown corpus directory the checkpoint was pretrained on"},
      {"vocab", "", "vocab.txt (default: the one next to the checkpoint)"},
      {"out", "runs/finetune", "output directory: metrics.jsonl, summary.json"},
      {"epochs", "3", "passes over the fine-tuning training split"},
      {"batch", "16", "sequences per step"},
      {"lr", "3e-4", "peak learning rate (AdamW, 10% warmup, linear decay)"},
      {"weight-decay", "0.01", "decoupled weight decay (not on biases and LayerNorm)"},
      {"max-train-seqs", "0", "use at most this many training sequences, drawn evenly over the documents by --seed (0: all)"},
      {"seed", "1", "seed of the classifier's initialisation, the order and the dropout"},
      {"threads", "0", "OpenMP threads (0: OpenMP's default)"},
      {"log-every", "20", "progress line every N steps"},
      // For --checkpoint none only: the encoder's shape.
      {"size", "mini", "with --checkpoint none: named model size (mini, small, base)"},
      {"layers", "0", "with --checkpoint none: layers (0: from --size)"},
      {"hidden", "0", "with --checkpoint none: hidden size (0: from --size)"},
      {"heads", "0", "with --checkpoint none: heads (0: from --size)"},
      {"ffn", "0", "with --checkpoint none: feed-forward size (0: 4H)"},
      {"max-len", "128", "with --checkpoint none: sequence length"},
      {"dropout", "0.1", "with --checkpoint none: dropout"},
      {"precision", "auto", "operands of every matrix product: fp32, bf16 or auto (bf16 where the CPU multiplies bf16 natively)"},
  };
}

struct TaskScores {
  double loss = 0, accuracy = 0, macro_f1 = 0;
  int count = 0;
};

inline TaskScores score(const std::vector<int>& gold, const std::vector<int>& pred, int classes) {
  TaskScores s;
  std::vector<int> tp(static_cast<std::size_t>(classes)), fp(tp), fn(tp);
  for (std::size_t i = 0; i < gold.size(); ++i) {
    ++s.count;
    if (gold[i] == pred[i]) {
      ++tp[static_cast<std::size_t>(gold[i])];
    } else {
      ++fn[static_cast<std::size_t>(gold[i])];
      ++fp[static_cast<std::size_t>(pred[i])];
    }
  }
  int correct = 0, present = 0;
  double f1 = 0;
  for (int c = 0; c < classes; ++c) {
    const auto k = static_cast<std::size_t>(c);
    correct += tp[k];
    if (tp[k] + fn[k] == 0) continue;  // macro-F1 over the classes present in the test split
    ++present;
    const double p = tp[k] + fp[k] ? static_cast<double>(tp[k]) / (tp[k] + fp[k]) : 0.0;
    const double r = static_cast<double>(tp[k]) / (tp[k] + fn[k]);
    f1 += p + r > 0 ? 2 * p * r / (p + r) : 0.0;
  }
  s.accuracy = s.count ? static_cast<double>(correct) / s.count : 0.0;
  s.macro_f1 = present ? f1 / present : 0.0;
  return s;
}

// `pld-bert finetune ARGS`: 0 when done (or after --help), a pld::Error for bad input; the
// progress and results go to `out`.
int run_finetune(const std::vector<std::string>& args, std::ostream& out);

}  // namespace bert
