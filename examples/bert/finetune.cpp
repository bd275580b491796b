// `pld-bert finetune` (finetune.hpp): the classifier head and the run, compiled once in pld_bert_lib.
#include "finetune.hpp"

#include <omp.h>

#include <chrono>

#include "model.hpp"

namespace bert {

namespace {

// A linear classifier over the rows of the encoder output that carry a label.
class ClassifierHead {
 public:
  ClassifierHead(int hidden, int classes, std::uint64_t seed, pld::cpu::Precision precision = pld::cpu::Precision::fp32)
      : H_(hidden), C_(classes), gemm_(precision), w_(static_cast<std::size_t>(classes) * hidden), b_(static_cast<std::size_t>(classes)) {
    init_normal(w_.w, seed, kClassifier);
  }
  void collect(std::vector<Param>& out) {
    out.push_back({"classifier.weight", w_.w.data(), w_.g.data(), w_.w.size(), -1, true});
    out.push_back({"classifier.bias", b_.w.data(), b_.g.data(), b_.w.size(), -1, false});
  }

  // Cross-entropy over rows with target >= 0; predictions (argmax) written for those rows into
  // `pred` (same indexing as target, -1 elsewhere). With dhidden, gradients as in MlmHead.
  MlmResult forward_backward(const std::vector<float>& hidden, const std::vector<int>& target, double grad_scale,
                             std::vector<float>* dhidden, std::vector<int>& pred) {
    for (int t : target)
      if (t >= C_) pld::detail::throw_error("label ", t, " outside the ", C_, " classes");
    const int M = sel_.gather(hidden, target, H_);
    pred.assign(target.size(), -1);
    if (dhidden) dhidden->assign(hidden.size(), 0.0f);
    if (M == 0) return MlmResult{0.0, 0, 0};
    const std::vector<float>& h = sel_.gathered();
    logits_.resize(static_cast<std::size_t>(M) * C_);
    pld::cpu::linear_forward(gemm_, h.data(), w_.w.data(), b_.w.data(), logits_.data(), M, H_, C_);
    const MlmResult res = sel_.cross_entropy(logits_.data(), C_, grad_scale, dhidden != nullptr, row_pred_);
    for (int m = 0; m < M; ++m) pred[static_cast<std::size_t>(sel_.rows()[static_cast<std::size_t>(m)])] = row_pred_[static_cast<std::size_t>(m)];
    if (!dhidden) return res;
    dh_.resize(h.size());
    pld::cpu::linear_backward(gemm_, logits_.data(), h.data(), w_.w.data(), dh_.data(), w_.g.data(), b_.g.data(), M, H_, C_);
    sel_.scatter(dh_, H_, *dhidden);
    return res;
  }

 private:
  int H_, C_;
  pld::cpu::Gemm gemm_;
  Tensor w_, b_;
  LabelledRows sel_;
  std::vector<int> row_pred_;
  std::vector<float> logits_, dh_;
};

void fill_batch(const std::vector<LabeledSequence>& seqs, const std::vector<std::uint32_t>& order, std::size_t first, int rows, int T,
                MlmBatch& b) {
  b.batch = rows;
  b.seq = T;
  const auto cells = static_cast<std::size_t>(rows) * static_cast<std::size_t>(T);
  b.input.assign(cells, kPad);
  b.target.assign(cells, -1);
  b.valid.assign(cells, 0);
  b.real_tokens = 0;
  for (int r = 0; r < rows; ++r) {
    const LabeledSequence& s = seqs[order[first + static_cast<std::size_t>(r)]];
    for (std::size_t t = 0; t < s.ids.size(); ++t) {
      const std::size_t i = static_cast<std::size_t>(r) * static_cast<std::size_t>(T) + t;
      b.input[i] = s.ids[t];
      b.target[i] = s.labels[t];
      b.valid[i] = 1;
    }
    b.real_tokens += static_cast<std::int64_t>(s.ids.size());
  }
}

}  // namespace

int run_finetune(const std::vector<std::string>& args, std::ostream& out) {
  namespace fs = std::filesystem;
  Options o("finetune", finetune_option_specs());
  o.parse(args);
  if (o.help_requested()) {
    out << "Fine-tunes a pretrained encoder on genre classification or POS tagging (held-out Brown documents).\n\n" << o.help();
    return 0;
  }
  const std::string task = o.choice("task", {"genre", "pos"});
  const int epochs = static_cast<int>(o.integer("epochs", 1, 1000));
  const int batch = static_cast<int>(o.integer("batch", 1, 1 << 16));
  const auto max_train = static_cast<std::size_t>(o.integer("max-train-seqs", 0, std::int64_t(1) << 40));
  const auto seed = static_cast<std::uint64_t>(o.integer("seed", 0, std::numeric_limits<std::int64_t>::max()));
  const int threads = static_cast<int>(o.integer("threads", 0, 1024));
  const std::int64_t log_every = o.integer("log-every", 1, std::int64_t(1) << 40);
  OptimizerConfig oc;
  oc.lr = o.real("lr", 0.0, 10.0);
  oc.weight_decay = o.real("weight-decay", 0.0, 10.0);
  oc.clip_norm = 1.0;
  const std::string ckpt_arg = o.str("checkpoint");
  if (ckpt_arg.empty()) pld::detail::throw_error("--checkpoint is required (a pretraining checkpoint.bin, or 'none')");
  if (threads > 0) omp_set_num_threads(threads);

  std::optional<Checkpoint> ckpt;
  Options model_opts("pretrain", pretrain_option_specs());
  std::string vocab_path = o.str("vocab");
  if (ckpt_arg != "none") {
    ckpt = read_checkpoint(ckpt_arg);
    const auto key = nlohmann::json::parse(ckpt->key);
    for (const auto& [k, v] : key.items())
      if (v.is_string() && k != "vocab_hash" && k != "train_data_hash") model_opts.set(k, v.get<std::string>());
    if (vocab_path.empty()) vocab_path = (fs::path(ckpt_arg).parent_path() / "vocab.txt").string();
  } else {
    for (const char* k : {"size", "layers", "hidden", "heads", "ffn", "max-len", "dropout"}) model_opts.set(k, o.str(k));
    if (vocab_path.empty()) pld::detail::throw_error("--checkpoint none needs --vocab");
  }
  const std::string out_dir = o.str("out");
  if (const std::string others = present_run_files(out_dir); !others.empty())
    pld::detail::throw_error("--out ", out_dir, " holds another run (", others, "): choose another --out (nothing was overwritten)");
  Data data = load_data(o.str("corpus"), vocab_path, out_dir, 0, out, /*may_train_vocab=*/false);
  if (ckpt) {
    const auto key = nlohmann::json::parse(ckpt->key);
    if (key.value("vocab_hash", std::string()) != std::to_string(data.vocab.hash()))
      pld::detail::throw_error("vocabulary ", vocab_path, " is not the one checkpoint ", ckpt_arg, " was trained with");
  }
  model_opts.set("precision", o.str("precision"));
  ModelConfig mc = model_config_from(model_opts, data.vocab.size());
  mc.seed = seed;
  const std::vector<int> ft = finetune_split(data.docs, data.split);
  auto build = [&](int which) {
    return task == "genre" ? genre_sequences(data.docs, data.split, ft, which, data.vocab, mc.max_len)
                           : pos_sequences(data.docs, data.split, ft, which, data.vocab, mc.max_len);
  };
  std::vector<LabeledSequence> train = build(0), test = build(1);
  if (max_train > 0 && train.size() > max_train) {
    // A subset drawn evenly over all training documents (the list is in document order, so a
    // prefix would hold only the first genres): a seeded shuffle, then the first max_train.
    philox_shuffle(train, seed, 0xFFFFFFFFull, DataStream::finetune, 1);
    train.resize(max_train);
  }
  if (train.empty() || test.empty()) pld::detail::throw_error("the held-out documents give no ", train.empty() ? "training" : "test", " sequences");
  const int classes = static_cast<int>(task == "genre" ? genre_labels().size() : pos_labels().size());
  out << "task " << task << ": " << classes << " classes, " << train.size() << " train and " << test.size() << " test sequences\n";

  Encoder encoder(mc);
  ClassifierHead head(mc.hidden, classes, seed, mc.precision);
  std::vector<Param> params;
  encoder.collect(params);
  if (ckpt) {
    // The encoder's tensors, by name, from the pretraining checkpoint (the MLM head is left).
    std::size_t loaded = 0;
    for (Param& p : params)
      for (std::size_t i = 0; i < ckpt->names.size(); ++i)
        if (ckpt->names[i] == p.name) {
          if (ckpt->values[i].size() != p.size) pld::detail::throw_error("checkpoint tensor ", p.name, " has the wrong size");
          std::copy(ckpt->values[i].begin(), ckpt->values[i].end(), p.value);
          ++loaded;
        }
    if (loaded != params.size()) pld::detail::throw_error("checkpoint ", ckpt_arg, " lacks ", params.size() - loaded, " encoder tensors");
    out << "encoder: " << loaded << " tensors from " << ckpt_arg << " (pretrained " << ckpt->step << " steps)\n";
  } else {
    out << "encoder: randomly initialised (no pretraining)\n";
  }
  head.collect(params);
  Optimizer opt(oc, params);
  pld::ScheduleSpec none;
  none.preset = pld::Preset::none;
  none.num_layers = mc.layers;
  const pld::Gate gate(pld::make_schedule(none), {seed});
  const std::int64_t steps_per_epoch = (static_cast<std::int64_t>(train.size()) + batch - 1) / batch;
  const std::int64_t total = steps_per_epoch * epochs;
  oc.warmup = total / 10;
  fs::create_directories(out_dir);  // everything checked: from here on the run writes
  std::ofstream metrics(out_dir + "/metrics.jsonl", std::ios::trunc);

  std::vector<float> hidden, dhidden;
  std::vector<int> pred;
  MlmBatch b;
  auto evaluate = [&](std::int64_t step) {
    const pld::LayerPlan plan = gate.plan(step, false);
    std::vector<int> gold, guess;
    double loss = 0;
    std::vector<std::uint32_t> order(test.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::uint32_t>(i);
    for (std::size_t i = 0; i < test.size(); i += static_cast<std::size_t>(batch)) {
      const int rows = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch), test.size() - i));
      fill_batch(test, order, i, rows, mc.max_len, b);
      encoder.forward(b.input, b.valid, rows, mc.max_len, plan, seed, hidden);
      const MlmResult r = head.forward_backward(hidden, b.target, 1.0, nullptr, pred);
      loss += r.loss * r.predicted;
      for (std::size_t k = 0; k < b.target.size(); ++k)
        if (b.target[k] >= 0) {
          gold.push_back(b.target[k]);
          guess.push_back(pred[k]);
        }
    }
    TaskScores s = score(gold, guess, classes);
    s.loss = gold.empty() ? 0.0 : loss / static_cast<double>(gold.size());
    return s;
  };
  const auto t_start = std::chrono::steady_clock::now();
  std::int64_t step = 0;
  TaskScores last;
  for (int e = 0; e < epochs; ++e) {
    std::vector<std::uint32_t> order(train.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::uint32_t>(i);
    philox_shuffle(order, seed, static_cast<std::uint64_t>(e), DataStream::finetune, 0);
    double loss_w = 0;
    int correct_w = 0, count_w = 0;
    for (std::size_t i = 0; i < order.size(); i += static_cast<std::size_t>(batch), ++step) {
      const int rows = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(batch), order.size() - i));
      fill_batch(train, order, i, rows, mc.max_len, b);
      const pld::LayerPlan plan = gate.plan(step, true);
      for (auto& p : params) std::fill(p.grad, p.grad + p.size, 0.0f);
      encoder.forward(b.input, b.valid, rows, mc.max_len, plan, seed, hidden);
      const MlmResult r = head.forward_backward(hidden, b.target, 1.0, &dhidden, pred);
      encoder.backward(dhidden);
      opt.clip(params);
      opt.update(params, learning_rate(oc, step, total), plan);
      loss_w += r.loss;
      correct_w += r.correct;
      count_w += r.predicted;
      if ((step + 1) % log_every == 0) {
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
        out << "epoch " << e + 1 << "/" << epochs << "  step " << step + 1 << "/" << total << "  loss " << loss_w / log_every << "  acc "
            << (count_w ? static_cast<double>(correct_w) / count_w : 0.0) << "  ETA "
            << format_duration(el / static_cast<double>(step + 1) * static_cast<double>(total - step - 1)) << "\n" << std::flush;
        metrics << nlohmann::json{{"step", step + 1}, {"split", "train"}, {"loss", loss_w / log_every},
                                  {"accuracy", count_w ? static_cast<double>(correct_w) / count_w : 0.0}}.dump() << "\n";
        loss_w = 0;
        correct_w = count_w = 0;
      }
    }
    last = evaluate(step);
    out << "epoch " << e + 1 << " test: loss " << last.loss << ", accuracy " << last.accuracy;
    if (task == "genre") out << ", macro-F1 " << last.macro_f1;
    out << " (" << last.count << " " << (task == "genre" ? "passages" : "words") << ")\n";
    metrics << nlohmann::json{{"step", step}, {"epoch", e + 1}, {"split", "test"}, {"loss", last.loss}, {"accuracy", last.accuracy},
                              {"macro_f1", last.macro_f1}, {"count", last.count}}.dump() << "\n";
    metrics.flush();
  }
  // The majority class of the training labels: the chance level a model must beat.
  std::vector<int> freq(static_cast<std::size_t>(classes), 0);
  for (const auto& s : train)
    for (int l : s.labels)
      if (l >= 0) ++freq[static_cast<std::size_t>(l)];
  const int majority = static_cast<int>(std::max_element(freq.begin(), freq.end()) - freq.begin());
  std::vector<int> gold, base;
  for (const auto& s : test)
    for (int l : s.labels)
      if (l >= 0) {
        gold.push_back(l);
        base.push_back(majority);
      }
  const TaskScores chance = score(gold, base, classes);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  nlohmann::json summary = {{"task", task}, {"checkpoint", ckpt_arg}, {"epochs", epochs}, {"steps", step}, {"train_s", secs},
                            {"test_loss", last.loss}, {"test_accuracy", last.accuracy}, {"test_macro_f1", last.macro_f1},
                            {"test_count", last.count}, {"majority_class_accuracy", chance.accuracy},
                            {"train_sequences", train.size()}, {"test_sequences", test.size()}};
  write_file_atomically(out_dir + "/summary.json", summary.dump(2) + "\n");
  out << "done: " << task << " test accuracy " << last.accuracy << (task == "genre" ? ", macro-F1 " + std::to_string(last.macro_f1) : "")
      << " (majority class: " << chance.accuracy << ") in " << format_duration(secs) << "\n";
  return 0;
}

}  // namespace bert
