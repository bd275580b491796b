// A LibTorch trainer with pld: a Pre-LN BERT encoder built from torch::nn modules, pretrained with
// masked-language modelling on the Brown corpus (the committed slice by default), AdamW from
// torch::optim, checkpoints in torch archives that resume with the same gate decisions, and at the
// end the realised speedup over a stack that drops nothing, timed in the same process.
//
//   pld_libtorch_bert [--corpus DIR] [--out DIR] [--steps N] [--pld pld|none|...] [--resume] ...
//   pld_libtorch_bert --help
//
// What pld adds to the loop is marked "pld:" below (docs/libtorch.md explains each line).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <pld/torch.hpp>

#include "dataset.hpp"   // examples/bert: corpus, split and WordPiece vocabulary
#include "mlm_data.hpp"  // examples/bert: packed sequences and BERT's masking

namespace {

struct Options {
  std::string corpus = PLD_EXAMPLE_CORPUS;
  std::string out = "runs/libtorch";
  int steps = 200, layers = 4, hidden = 128, heads = 4, max_len = 64, batch = 16, vocab_size = 2000;
  double lr = 1e-3, dropout = 0.1, theta_bar = 0.5, gamma = 0.02;
  int warmup = 20, log_every = 10, checkpoint_every = 50, stop_at = 0, baseline_steps = 50, threads = 0, eval_seqs = 128;
  std::string preset = "pld", granularity = "layer";
  std::uint64_t seed = 1;
  bool resume = false, skip_dropped_updates = false, print_plans = false;
};

const char* kUsage =
    "usage: pld_libtorch_bert [options]\n"
    "  --corpus DIR           Brown corpus directory or plain-text file (default: the committed slice)\n"
    "  --out DIR              checkpoint.pt and vocab.txt go here (default runs/libtorch)\n"
    "  --steps N              optimizer steps (default 200)      --stop-at N  stop after step N, as if preempted\n"
    "  --layers N --hidden N --heads N --max-len N --batch N --vocab-size N   model and data shape\n"
    "  --lr X --warmup N --dropout X --seed N --threads N (0: LibTorch's default)\n"
    "  --pld PRESET           none, pld, random, td_only, dd_only (default pld)\n"
    "  --theta-bar X --gamma X   PLD's schedule (default 0.5, 0.02)\n"
    "  --granularity layer|sample   the gate per step or per sequence\n"
    "  --skip-dropped-updates   leave dropped layers' weights and AdamW state untouched\n"
    "  --resume               continue from <out>/checkpoint.pt (fresh start if none)\n"
    "  --checkpoint-every N --log-every N --eval-seqs N --baseline-steps N (default 50; 0: no speedup measurement)\n"
    "  --print-plans          print every step's kept layers (the resume test compares them)\n";

Options parse(int argc, char** argv) {
  Options o;
  std::map<std::string, std::string*> strings{{"--corpus", &o.corpus}, {"--out", &o.out}, {"--pld", &o.preset}, {"--granularity", &o.granularity}};
  std::map<std::string, int*> ints{{"--steps", &o.steps},         {"--layers", &o.layers},     {"--hidden", &o.hidden},
                                   {"--heads", &o.heads},         {"--max-len", &o.max_len},   {"--batch", &o.batch},
                                   {"--vocab-size", &o.vocab_size}, {"--warmup", &o.warmup},   {"--log-every", &o.log_every},
                                   {"--checkpoint-every", &o.checkpoint_every}, {"--stop-at", &o.stop_at},
                                   {"--baseline-steps", &o.baseline_steps}, {"--threads", &o.threads}, {"--eval-seqs", &o.eval_seqs}};
  std::map<std::string, double*> doubles{{"--lr", &o.lr}, {"--dropout", &o.dropout}, {"--theta-bar", &o.theta_bar}, {"--gamma", &o.gamma}};
  std::map<std::string, bool*> flags{{"--resume", &o.resume}, {"--skip-dropped-updates", &o.skip_dropped_updates}, {"--print-plans", &o.print_plans}};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      std::exit(0);
    }
    if (flags.count(a)) {
      *flags[a] = true;
      continue;
    }
    if (i + 1 >= argc) pld::detail::throw_error("option ", a, " needs a value (see --help)");
    const std::string v = argv[++i];
    std::size_t used = 0;
    try {
      if (strings.count(a)) {
        *strings[a] = v;
        continue;
      } else if (ints.count(a)) {
        *ints[a] = std::stoi(v, &used);
      } else if (doubles.count(a)) {
        *doubles[a] = std::stod(v, &used);
      } else if (a == "--seed") {
        o.seed = std::stoull(v, &used);
      } else {
        pld::detail::throw_error("unknown option ", a, " (see --help)");
      }
    } catch (const std::logic_error&) {
      used = 0;
    }
    if (used != v.size()) pld::detail::throw_error("option ", a, ": '", v, "' is not a number");
  }
  if (o.steps < 1 || o.layers < 1 || o.batch < 1 || o.hidden < 1 || o.heads < 1 || o.warmup < 0 || o.log_every < 1 || o.stop_at < 0 ||
      o.baseline_steps < 0 || o.threads < 0 || o.eval_seqs < 1 || o.checkpoint_every < 0)
    pld::detail::throw_error("sizes and counts must be positive (steps, layers, batch, hidden, heads, log-every, eval-seqs)");
  if (!(o.lr > 0)) pld::detail::throw_error("--lr must be > 0");
  if (o.granularity != "layer" && o.granularity != "sample") pld::detail::throw_error("--granularity must be layer or sample");
  return o;
}

// Pre-LN BERT for masked-language modelling: token + position embeddings, L gated encoder layers,
// a final LayerNorm and the output projection tied to the token embedding (masked rows only).
struct BertMlmImpl : torch::nn::Module {
  BertMlmImpl(const pld::LayerConfig& cfg, int num_layers, int vocab, int max_len, double dropout) : dropout_(dropout) {
    tok = register_module("tok", torch::nn::Embedding(vocab, cfg.hidden));
    pos = register_module("pos", torch::nn::Embedding(max_len, cfg.hidden));
    stack = register_module("layers", torch::nn::ModuleList());
    for (int i = 0; i < num_layers; ++i) {
      layers.emplace_back(cfg);
      stack->push_back(layers.back());
    }
    final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({cfg.hidden}).eps(cfg.ln_eps)));
    out_bias = register_parameter("out_bias", torch::zeros({vocab}));
    torch::NoGradGuard no_grad;
    for (auto& p : named_parameters())  // BERT's initialisation: N(0, 0.02) for every matrix
      if (p.value().dim() == 2) p.value().normal_(0.0, 0.02);
  }

  // pld: the layer stack runs through the step's plan (dropped layers are not called).
  at::Tensor encode(const at::Tensor& input, const at::Tensor& padding, const pld::LayerPlan& plan) {
    const auto T = input.size(1);
    at::Tensor h = tok(input) + pos(torch::arange(T, torch::kInt64)).unsqueeze(0);
    h = torch::dropout(h, dropout_, is_training());
    h = pld::libtorch::forward_stack(plan, layers, h, padding);
    return final_norm(h);
  }

  // Mean cross-entropy over the masked positions (target >= 0), and how many were right.
  std::pair<at::Tensor, std::int64_t> mlm_loss(const at::Tensor& hidden, const at::Tensor& target) {
    const at::Tensor flat = target.reshape({-1});
    const at::Tensor rows = torch::nonzero(flat >= 0).squeeze(1);
    const at::Tensor h = hidden.reshape({-1, hidden.size(2)}).index_select(0, rows);
    const at::Tensor logits = torch::matmul(h, tok->weight.t()) + out_bias;
    const at::Tensor t = flat.index_select(0, rows);
    const std::int64_t correct = logits.argmax(1).eq(t).sum().item<std::int64_t>();
    return {torch::nn::functional::cross_entropy(logits, t), correct};
  }

  torch::nn::Embedding tok{nullptr}, pos{nullptr};
  torch::nn::ModuleList stack{nullptr};
  std::vector<pld::libtorch::EncoderLayer> layers;
  torch::nn::LayerNorm final_norm{nullptr};
  at::Tensor out_bias;
  double dropout_;
};
TORCH_MODULE(BertMlm);

struct Batch {
  at::Tensor input, target, padding;
  std::int64_t tokens = 0;
};

Batch to_tensors(const bert::MlmBatch& b) {
  Batch t;
  const std::vector<std::int64_t> shape{b.batch, b.seq};
  std::vector<std::int64_t> in(b.input.begin(), b.input.end()), tg(b.target.begin(), b.target.end());
  std::vector<std::uint8_t> pad(b.valid.size());
  for (std::size_t i = 0; i < pad.size(); ++i) pad[i] = b.valid[i] ? 0 : 1;
  t.input = torch::tensor(in, torch::kInt64).reshape(shape);
  t.target = torch::tensor(tg, torch::kInt64).reshape(shape);
  t.padding = torch::tensor(at::ArrayRef<std::uint8_t>(pad), torch::kUInt8).reshape(shape).to(torch::kBool);
  t.tokens = b.real_tokens;
  return t;
}

double lr_at(const Options& o, std::int64_t step) {
  if (step < o.warmup) return o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
  const double left = static_cast<double>(o.steps - step) / static_cast<double>(std::max(1, o.steps - o.warmup));
  return o.lr * std::max(0.0, left);
}

void set_lr(torch::optim::AdamW& opt, double lr) {
  for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
}

pld::Controller make_controller(const Options& o) {
  pld::ScheduleSpec spec;
  spec.preset = pld::parse_preset(o.preset);
  spec.num_layers = o.layers;
  spec.theta_bar = o.theta_bar;
  spec.gamma = o.gamma;
  pld::GateConfig gate;
  gate.seed = o.seed;
  gate.granularity = o.granularity == "sample" ? pld::Granularity::sample : pld::Granularity::layer;
  return pld::Controller(pld::make_schedule(spec), gate);
}

// One optimizer step on `b` under `plan`; returns (loss, masked tokens right).
std::pair<double, std::int64_t> train_step(BertMlm& model, torch::optim::AdamW& opt, const Batch& b, const pld::LayerPlan& plan,
                                           bool skip_dropped_updates) {
  opt.zero_grad();
  auto [loss, correct] = model->mlm_loss(model->encode(b.input, b.padding, plan), b.target);
  loss.backward();
  // pld: a dropped layer's weights and moments stay as they are (optional).
  if (skip_dropped_updates) pld::libtorch::release_dropped_grads(plan, model->stack);
  torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
  opt.step();
  return {loss.item<double>(), correct};
}

// Seconds per optimizer step with every layer kept, on a throwaway copy of the setup: what the
// same training costs without layer dropping, measured in this process beside the real run.
double time_none_steps(const Options& o, const pld::LayerConfig& cfg, int vocab, bert::MlmStream stream, int n) {
  torch::manual_seed(o.seed);
  BertMlm model(cfg, o.layers, vocab, o.max_len, o.dropout);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0.01));
  Options none_options = o;
  none_options.preset = "none";
  pld::Controller none = make_controller(none_options);
  bert::MlmBatch mb;
  double seconds = 0.0;
  for (int i = 0; i < n + 5; ++i) {  // five untimed warm-up steps
    stream.next(o.batch, mb);
    const Batch b = to_tensors(mb);
    const auto t0 = std::chrono::steady_clock::now();
    const pld::LayerPlan& plan = none.begin_step(i, o.granularity == "sample" ? o.batch : 0);
    train_step(model, opt, b, plan, false);
    none.end_step();
    if (i >= 5) seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return seconds / n;
}

int run(const Options& o) {
  if (o.threads > 0) torch::set_num_threads(o.threads);
  std::filesystem::create_directories(o.out);
  bert::Data data = bert::load_data(o.corpus, "", o.out, o.vocab_size, std::cout);
  if (data.vocab_trained) data.vocab.save(data.vocab_path);
  const auto train = bert::pack_sequences(data.docs, data.split, bert::Split::train, data.vocab, o.max_len);
  const auto valid = bert::pack_sequences(data.docs, data.split, bert::Split::validation, data.vocab, o.max_len);
  if (valid.empty()) pld::detail::throw_error("corpus ", o.corpus, " has no validation sequences");
  bert::MlmStream stream(&train, o.max_len, data.vocab.size(), o.seed, 0.15);

  pld::LayerConfig cfg;
  cfg.hidden = o.hidden;
  cfg.heads = o.heads;
  cfg.attention_dropout = cfg.hidden_dropout = static_cast<float>(o.dropout);
  cfg.validate();
  torch::manual_seed(o.seed);
  BertMlm model(cfg, o.layers, data.vocab.size(), o.max_len, o.dropout);
  torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(o.lr).weight_decay(0.01));
  pld::Controller ctl = make_controller(o);  // pld: schedule + gate + statistics

  const std::string ckpt = o.out + "/checkpoint.pt";
  std::int64_t start = 0;
  if (o.resume && std::filesystem::exists(ckpt)) {
    pld::libtorch::CheckpointCounters c;
    c.values = {{"next_step", 0}, {"data_position", 0}};
    pld::libtorch::load_checkpoint(ckpt, *model, opt, ctl, &c);  // pld: the controller's state too
    start = c.values["next_step"];
    stream.seek(static_cast<std::uint64_t>(c.values["data_position"]));
    std::cout << "resumed from " << ckpt << " at step " << start << "\n";
  }
  auto save = [&](std::int64_t next_step) {
    pld::libtorch::CheckpointCounters c;
    c.values = {{"next_step", next_step}, {"data_position", static_cast<std::int64_t>(stream.position())}};
    pld::libtorch::save_checkpoint(ckpt, *model, opt, ctl, c);
  };
  std::cout << "model: L=" << o.layers << " H=" << o.hidden << " heads=" << o.heads << " vocab=" << data.vocab.size() << ", "
            << train.size() << " training sequences of <= " << o.max_len << " tokens; PLD " << o.preset << ", LibTorch "
            << torch::get_num_threads() << " threads\n";

  const std::int64_t end = o.stop_at > 0 ? std::min<std::int64_t>(o.stop_at, o.steps) : o.steps;
  bert::MlmBatch mb;
  model->train();
  for (std::int64_t step = start; step < end; ++step) {
    stream.next(o.batch, mb);
    const Batch b = to_tensors(mb);
    const auto t0 = std::chrono::steady_clock::now();
    const pld::LayerPlan& plan = ctl.begin_step(step, o.granularity == "sample" ? o.batch : 0);  // pld
    set_lr(opt, lr_at(o, step));
    const auto [loss, correct] = train_step(model, opt, b, plan, o.skip_dropped_updates);
    if (!std::isfinite(loss)) pld::detail::throw_error("loss is not finite at step ", step, " (lr too large?)");
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.print_plans) {
      std::string bits;
      for (int i = 0; i < plan.num_layers(); ++i) bits += plan.kept(i) ? '1' : '0';
      std::cout << "plan " << step << " " << bits << "\n";
    }
    ctl.end_step({loss, b.tokens, sec});  // pld
    if ((step + 1) % o.log_every == 0 || step + 1 == end) {
      const pld::ControllerStats& s = ctl.stats();
      std::printf("step %lld/%d  loss %.4f  theta %.3f  kept %d/%d  work saved %.1f%%  %.0f tok/s\n", static_cast<long long>(step + 1),
                  o.steps, loss, s.theta, s.layers_kept, o.layers, 100.0 * s.layer_work_saved(), s.tokens_per_second());
      std::fflush(stdout);
    }
    if (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0) save(step + 1);
  }
  save(end);
  std::cout << "checkpoint: " << ckpt << " (next step " << end << ")\n";

  // Validation: every layer, scale 1, no dropout.
  {
    torch::NoGradGuard no_grad;
    model->eval();
    ctl.eval();  // pld: evaluation plans keep every layer
    bert::MlmStream vstream(&valid, o.max_len, data.vocab.size(), /*seed=*/12345, 0.15);
    double loss_sum = 0.0;
    std::int64_t right = 0, masked = 0;
    const int n = std::min<int>(o.eval_seqs, static_cast<int>(valid.size()));
    for (int done = 0; done < n; done += o.batch) {
      vstream.next(std::min(o.batch, n - done), mb);
      const Batch b = to_tensors(mb);
      const pld::LayerPlan& plan = ctl.begin_step(end);
      auto [loss, correct] = model->mlm_loss(model->encode(b.input, b.padding, plan), b.target);
      ctl.end_step();
      loss_sum += loss.item<double>() * mb.masked;
      right += correct;
      masked += mb.masked;
    }
    ctl.train();
    std::printf("validation: MLM loss %.4f, accuracy %.3f over %lld masked tokens (ln V = %.3f)\n", loss_sum / masked,
                static_cast<double>(right) / static_cast<double>(masked), static_cast<long long>(masked), std::log(data.vocab.size()));
  }

  const pld::ControllerStats& s = ctl.stats();
  if (o.baseline_steps > 0 && s.steps_done > 0) {
    const double none = time_none_steps(o, cfg, data.vocab.size(), stream, o.baseline_steps);
    const double ours = s.seconds / static_cast<double>(s.steps_done);
    std::printf("realised speedup over none: %.2fx (none %.1f ms/step over %d steps in this process, %s %.1f ms/step over %lld steps; "
                "layer work kept %.3f)\n",
                none / ours, 1e3 * none, o.baseline_steps, o.preset.c_str(), 1e3 * ours, static_cast<long long>(s.steps_done),
                s.mean_realised_kept());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse(argc, argv));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pld_libtorch_bert: %s\n", e.what());
    return 1;
  }
}
