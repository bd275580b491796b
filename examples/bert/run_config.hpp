// pld-bert's options, as tables (name, default, help), and what they build: the model's shape,
// the PLD schedule, the optimizer. Shared by pretraining and fine-tuning.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "model_config.hpp"
#include "optimizer.hpp"
#include "options.hpp"
#include "pld/cpu/gemm.hpp"
#include "pld/pld.hpp"
#include "trainer.hpp"

namespace bert {

inline std::string default_corpus_dir() {
  if (const char* d = std::getenv("PLD_DATA_DIR")) return std::string(d) + "/brown";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/pld/brown";
  return "brown";
}

inline std::vector<OptionSpec> model_option_specs() {
  return {
      {"size", "mini", "named model size: mini (L=4 H=256 N=4), small (L=4 H=512 N=8), base (L=12 H=768 N=12)"},
      {"layers", "0", "encoder layers L (0: from --size)"},
      {"hidden", "0", "hidden size H (0: from --size)"},
      {"heads", "0", "attention heads N, H % N == 0 (0: from --size)"},
      {"ffn", "0", "feed-forward size F (0: 4H)"},
      {"max-len", "128", "tokens per sequence including [CLS] and [SEP] (8..4096)"},
      {"dropout", "0.1", "dropout on embeddings, attention probabilities and residual branches"},
      {"norm", "pre", "LayerNorm position: pre (Pre-LN, PLD's layer, with a final LayerNorm) or post (Post-LN, BERT's original layer)"},
      {"precision", "auto", "CPU: operands of every matrix product, fp32, bf16 (fp32 accumulation; needs oneDNN) or auto (bf16 where the CPU multiplies bf16 natively: AMX, AVX512-BF16); GPU (pretrain --device cuda): storage of weights and activations, bf16 (auto), fp16 (with dynamic loss scaling) or fp32, always with fp32 accumulation and master weights"},
  };
}

inline std::vector<OptionSpec> pretrain_option_specs() {
  std::vector<OptionSpec> s = {
      {"config", "", "JSON file of option values (keys are these option names); flags override it"},
      {"corpus", default_corpus_dir(), "Brown corpus directory (scripts/fetch-brown.sh) or a plain-text file: documents separated by blank lines"},
      {"out", "runs/bert", "output directory: vocab.txt, checkpoint.bin, metrics.jsonl, summary.json, options.json"},
      {"vocab", "", "vocab.txt to use (default: <out>/vocab.txt, trained on the training split when missing)"},
      {"vocab-size", "8192", "WordPiece vocabulary size when training one"},
      {"device", "cpu", "cpu, or cuda (needs a pld-bert built with CUDA: the current GPU, or under mpirun one GPU per process, the gradients summed over NCCL)"},
  };
  for (auto& m : model_option_specs()) s.push_back(m);
  std::vector<OptionSpec> t = {
      {"batch", "16", "sequences per micro-batch"},
      {"accum", "1", "micro-batches per optimizer step (gradient accumulation)"},
      {"steps", "1000", "optimizer steps of the whole run (sets the learning-rate schedule)"},
      {"stop-at", "0", "stop after this step and checkpoint, as if preempted (0: run to --steps)"},
      {"optimizer", "adamw", "adamw or lamb"},
      {"lr", "1e-3", "peak learning rate"},
      {"warmup", "100", "linear warmup steps"},
      {"lr-decay", "linear", "after warmup: linear (to 0) or exp (to lr * final-lr-ratio)"},
      {"final-lr-ratio", "0.01", "exponential decay: final lr / peak lr"},
      {"weight-decay", "0.01", "decoupled weight decay (not on biases and LayerNorm)"},
      {"beta1", "0.9", "Adam/LAMB beta1"},
      {"beta2", "0.999", "Adam/LAMB beta2"},
      {"adam-eps", "1e-6", "Adam/LAMB epsilon"},
      {"clip-norm", "1.0", "clip the global gradient norm to this (0: off)"},
      {"skip-dropped-updates", "false", "leave parameters (and moments) of layers dropped this step untouched", true},
      {"mask-prob", "0.15", "fraction of tokens masked for MLM (80% [MASK], 10% random, 10% kept)"},
      {"pld", "pld", "layer-dropping preset: none, pld (temporal x depth), random (fixed keep ratio), td_only, dd_only"},
      {"theta-bar", "0.5", "floor of theta(t) for pld/td_only, or the fixed theta of dd_only"},
      {"gamma", "0.005", "temporal decay rate of pld/td_only: theta(t) = (1 - theta_bar) exp(-gamma t) + theta_bar"},
      {"keep-ratio", "", "random: keep probability of every layer; 'pld-mean' = PLD's mean kept fraction over --steps with the same theta-bar/gamma (default: PLD's steady-state mean)"},
      {"delay", "0", "steps before any layer is dropped"},
      {"sampling", "bernoulli", "gate sampling: bernoulli (independent per layer) or fixed_count (exact count per step)"},
      {"granularity", "layer", "gate granularity: layer (whole batch) or sample (each sequence on its own)"},
      {"seed", "1", "seed of the parameters, data order, masking, dropout and gate"},
      {"threads", "0", "OpenMP threads (0: OpenMP's default, usually all cores)"},
      {"eval-every", "250", "evaluate on the validation split every N steps (0: only at the end)"},
      {"eval-max-seqs", "512", "validation sequences per evaluation (0: all)"},
      {"log-every", "10", "progress line and metrics record every N steps"},
      {"checkpoint-every", "500", "checkpoint every N steps (0: only at the end)"},
      {"resume", "", "continue from a checkpoint: a file, or 'auto' for <out>/checkpoint.bin (fresh start if none)"},
      {"max-loss", "auto", "stop the run as diverged when a step's loss exceeds this or is not finite ('auto': 2 ln V, twice a uniform guess; 0: never)"},
      {"allow-noisy-corpus", "false", "train even when the corpus is >1% non-text bytes or >5% of its tokens are [UNK]", true},
  };
  for (auto& x : t) s.push_back(x);
  return s;
}

// `cpu`: the model runs on the CPU (the precision is its products'); a GPU run's precision is
// gpu_precision_from's.
inline ModelConfig model_config_from(const Options& o, int vocab_size, bool cpu = true) {
  ModelConfig c;
  const std::string size = o.choice("size", {"mini", "small", "base"});
  if (size == "mini") c.layers = 4, c.hidden = 256, c.heads = 4;
  if (size == "small") c.layers = 4, c.hidden = 512, c.heads = 8;
  if (size == "base") c.layers = 12, c.hidden = 768, c.heads = 12;
  if (const auto v = o.integer("layers", 0, 1000)) c.layers = static_cast<int>(v);
  if (const auto v = o.integer("hidden", 0, 65536)) c.hidden = static_cast<int>(v);
  if (const auto v = o.integer("heads", 0, 4096)) c.heads = static_cast<int>(v);
  c.ffn = static_cast<int>(o.integer("ffn", 0, 1 << 20));
  c.max_len = static_cast<int>(o.integer("max-len", 8, 4096));
  c.dropout = static_cast<float>(o.real("dropout", 0.0, 0.9));
  c.norm = pld::parse_norm_position(o.choice("norm", {"pre", "post"}));
  c.vocab = vocab_size;
  const std::string precision = o.choice("precision", {"auto", "fp32", "bf16", "fp16"});
  if (cpu && precision == "fp16")
    pld::detail::throw_error("--precision fp16 is for the GPU (pretrain --device cuda); the CPU multiplies in fp32 or bf16");
  c.precision = cpu ? pld::cpu::resolve_precision(pld::cpu::parse_precision(precision)) : pld::cpu::Precision::fp32;
  if (c.precision == pld::cpu::Precision::bf16 && !pld::cpu::has_onednn())
    pld::detail::throw_error("--precision bf16 needs oneDNN: this pld-bert was built without it (install libdnnl-dev and rebuild)");
  if (c.hidden % c.heads != 0) pld::detail::throw_error("--hidden (", c.hidden, ") must be divisible by --heads (", c.heads, ")");
  return c;
}

inline GpuPrecision gpu_precision_from(const Options& o) {
  const std::string p = o.choice("precision", {"auto", "fp32", "bf16", "fp16"});
  return p == "fp32" ? GpuPrecision::fp32 : p == "fp16" ? GpuPrecision::fp16 : GpuPrecision::bf16;
}

inline pld::ScheduleSpec schedule_spec_from(const Options& o, int layers) {
  pld::ScheduleSpec s;
  s.preset = pld::parse_preset(o.choice("pld", {"none", "pld", "random", "td_only", "dd_only"}));
  s.num_layers = layers;
  const bool td = s.preset == pld::Preset::pld || s.preset == pld::Preset::td_only;
  if (td || s.preset == pld::Preset::dd_only) s.theta_bar = o.real("theta-bar", 0.0, 1.0);
  if (td) s.gamma = o.real("gamma", 0.0, 1e6);
  if (!o.str("keep-ratio").empty()) {
    if (s.preset != pld::Preset::random) pld::detail::throw_error("--keep-ratio applies to --pld random only");
    if (o.str("keep-ratio") == "pld-mean") {
      // The mean kept fraction of PLD (same L, theta-bar, gamma, delay) over --steps: random
      // dropping at the same expected compute as the PLD run, without its schedule.
      pld::ScheduleSpec p;
      p.preset = pld::Preset::pld;
      p.num_layers = layers;
      p.theta_bar = o.real("theta-bar", 0.0, 1.0);
      p.gamma = o.real("gamma", 0.0, 1e6);
      p.delay = o.integer("delay", 0, std::int64_t(1) << 40);
      s.keep_ratio = pld::cumulative_kept_fraction(pld::make_schedule(p), o.integer("steps", 1, std::int64_t(1) << 40));
    } else {
      s.keep_ratio = o.real("keep-ratio", 1e-6, 1.0);
    }
  }
  if (s.preset != pld::Preset::none) s.delay = o.integer("delay", 0, std::int64_t(1) << 40);
  return s;
}

inline OptimizerConfig optimizer_config_from(const Options& o) {
  OptimizerConfig c;
  c.kind = parse_optimizer(o.choice("optimizer", {"adamw", "lamb"}));
  c.lr = o.real("lr", 0.0, 10.0);
  c.warmup = o.integer("warmup", 0, std::int64_t(1) << 40);
  c.decay = parse_lr_decay(o.choice("lr-decay", {"linear", "exp"}));
  c.final_lr_ratio = o.real("final-lr-ratio", 1e-9, 1.0);
  c.weight_decay = o.real("weight-decay", 0.0, 10.0);
  c.beta1 = o.real("beta1", 0.0, 0.999999);
  c.beta2 = o.real("beta2", 0.0, 0.999999999);
  c.eps = o.real("adam-eps", 1e-30, 1.0);
  c.clip_norm = o.real("clip-norm", 0.0, 1e9);
  c.skip_dropped = o.boolean("skip-dropped-updates");
  return c;
}

// Corpus, split, vocabulary and packed sequences, shared by pretraining and fine-tuning.

}  // namespace bert
