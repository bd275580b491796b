// `pld-bert pretrain` (pretrain.hpp): the run, compiled once in pld_bert_lib.
#include "pretrain.hpp"

#include <omp.h>

#include <chrono>
#include <map>

#include "cpu_trainer.hpp"
#include "pld/dist/reducer.hpp"
#include "prefetch.hpp"

namespace bert {

int run_pretrain(const std::vector<std::string>& args, std::ostream& out_arg, pld::dist::Communicator* comm_arg,
                 const TrainerFactory& cuda) {
  Options o("pretrain", pretrain_option_specs());
  o.parse(args);
  if (o.help_requested()) {
    out_arg << "Pretrains BERT with masked-language modelling and progressive layer dropping on the CPU or a GPU.\n\n" << o.help();
    return 0;
  }
  pld::dist::LocalCommunicator local;
  pld::dist::Communicator& comm = comm_arg ? *comm_arg : local;
  const int world = comm.size(), rank = comm.rank();
  const bool root = rank == 0;
  NullStream quiet;
  std::ostream& out = root ? out_arg : quiet;
  namespace fs = std::filesystem;
  // Every option is validated, the corpus read, the vocabulary built and the checkpoint checked
  // before anything is written: a refused run leaves no file behind.
  const std::string out_dir = o.str("out");
  const int threads = static_cast<int>(o.integer("threads", 0, 1024));
  const int batch = static_cast<int>(o.integer("batch", 1, 1 << 16));
  if (batch % world != 0)
    pld::detail::throw_error("--batch ", batch, " is the global batch and must divide evenly over the ", world, " ranks");
  const int shard = batch / world, first_row = rank * shard;  // this rank's rows of every global batch
  const int accum = static_cast<int>(o.integer("accum", 1, 1 << 16));
  const std::int64_t steps = o.integer("steps", 1, std::int64_t(1) << 40);
  const std::int64_t stop_at = o.integer("stop-at", 0, std::int64_t(1) << 40);
  const std::int64_t eval_every = o.integer("eval-every", 0, std::int64_t(1) << 40);
  const auto eval_max = static_cast<std::size_t>(o.integer("eval-max-seqs", 0, std::int64_t(1) << 40));
  const std::int64_t log_every = o.integer("log-every", 1, std::int64_t(1) << 40);
  const std::int64_t ckpt_every = o.integer("checkpoint-every", 0, std::int64_t(1) << 40);
  const double mask_prob = o.real("mask-prob", 0.01, 0.9);
  const auto seed = static_cast<std::uint64_t>(o.integer("seed", 0, std::numeric_limits<std::int64_t>::max()));
  const int vocab_size = static_cast<int>(o.integer("vocab-size", kNumSpecial + 1, 1 << 20));
  const bool allow_noisy = o.boolean("allow-noisy-corpus");
  const double max_loss_arg = o.str("max-loss") == "auto" ? -1.0 : o.real("max-loss", 0.0, 1e30);
  const OptimizerConfig opt_cfg = optimizer_config_from(o);
  const bool gpu = o.choice("device", {"cpu", "cuda"}) == "cuda";
  const GpuPrecision gpu_precision = gpu_precision_from(o);
  if (gpu && !cuda)
    pld::detail::throw_error("--device cuda: this pld-bert was built without CUDA (configure with a CUDA toolkit and -DPLD_ENABLE_CUDA=ON)");
  pld::GateConfig gate_cfg;
  gate_cfg.seed = seed;
  gate_cfg.sampling = pld::parse_sampling(o.choice("sampling", {"bernoulli", "fixed_count"}));
  gate_cfg.granularity = pld::parse_granularity(o.choice("granularity", {"layer", "sample"}));
  if (gate_cfg.granularity == pld::Granularity::sample && opt_cfg.skip_dropped)
    pld::detail::throw_error("--skip-dropped-updates needs --granularity layer");
  // The model's shape and the schedule, built once here so their errors come first.
  pld::make_schedule(schedule_spec_from(o, model_config_from(o, kNumSpecial + 1, !gpu).layers));
  const std::string ckpt_path = out_dir + "/checkpoint.bin";
  std::string resume = o.str("resume");
  if (resume == "auto") resume = fs::exists(ckpt_path) ? ckpt_path : "";
  const std::string others = present_run_files(out_dir);
  if (resume.empty() && fs::exists(ckpt_path))
    pld::detail::throw_error(ckpt_path, " exists: pass --resume auto to continue that run, or choose another --out (nothing was overwritten)");
  if (resume.empty() && o.str("resume") != "auto" && !others.empty())
    pld::detail::throw_error("--out ", out_dir, " holds another run (", others, "): pass --resume auto to continue it, or choose another --out (nothing was overwritten)");
  if (resume.empty() && fs::exists(out_dir + "/summary.json"))
    pld::detail::throw_error("--out ", out_dir, " holds a finished run (summary.json) without a checkpoint: choose another --out (nothing was overwritten)");
  std::optional<Checkpoint> ckpt;
  if (!resume.empty()) ckpt = read_checkpoint(resume);  // a corrupt file fails here, before any work
  if (!resume.empty() && !same_file(resume, ckpt_path) && !others.empty())
    pld::detail::throw_error("--out ", out_dir, " holds another run (", others, "); resuming ", resume,
                             " there would overwrite it: choose an --out without one (nothing was overwritten)");
  if (ckpt && stop_at > 0 && stop_at <= ckpt->step)
    pld::detail::throw_error("--stop-at ", stop_at, " is not after checkpoint ", resume, "'s step ", ckpt->step, " (nothing to do)");
  // A checkpoint at exactly --steps is a run whose training is done but which may have stopped
  // before its summary (a kill between the last checkpoint and the end): it is finished, not refused.
  if (ckpt && ckpt->step > steps) pld::detail::throw_error("checkpoint ", resume, " is at step ", ckpt->step, ", past --steps ", steps);

  if (threads > 0) omp_set_num_threads(threads);
  Data data = load_data(o.str("corpus"), o.str("vocab"), out_dir, vocab_size, out, /*may_train_vocab=*/true, allow_noisy);
  ModelConfig mc = model_config_from(o, data.vocab.size(), !gpu);
  mc.seed = seed;
  const std::vector<Sequence> train = pack_sequences(data.docs, data.split, Split::train, data.vocab, mc.max_len);
  const std::vector<Sequence> valid = pack_sequences(data.docs, data.split, Split::validation, data.vocab, mc.max_len);
  out << "sequences: " << train.size() << " train, " << valid.size() << " validation (max_len " << mc.max_len << ")\n";
  if (valid.empty()) pld::detail::throw_error("the validation split is empty: the corpus needs at least one validation document");
  const double unk = unk_share(train);
  check_unk_share(unk, data.vocab_path, allow_noisy);
  // A step whose loss exceeds this has diverged: twice the loss of a uniform guess over V tokens
  // (a fresh model starts near ln V; a healthy run only goes down from there).
  const double max_loss = max_loss_arg < 0 ? 2.0 * std::log(static_cast<double>(data.vocab.size())) : max_loss_arg;
  const LossReferences refs = loss_references(train, validation_targets(valid, eval_max, mc.max_len, mc.vocab, mask_prob), mc.vocab);

  // What a checkpoint must match to be resumed: everything that shapes the numbers.
  std::uint64_t data_hash = 1469598103934665603ull;
  for (const auto& s : train)
    for (int id : s.ids) data_hash = (data_hash ^ static_cast<std::uint64_t>(id)) * 1099511628211ull;
  nlohmann::json key = o.to_json();
  // Not in the key: how a run is executed rather than what it computes (precision changes the last
  // bits, not the model: a checkpoint moves between fp32 and bf16 machines, exact only on the same one).
  for (const char* k : {"config", "corpus", "out", "vocab", "steps", "stop-at", "threads", "eval-every", "eval-max-seqs", "log-every",
                        "checkpoint-every", "resume", "max-loss", "allow-noisy-corpus", "precision", "device"})
    key.erase(k);
  key["vocab_hash"] = std::to_string(data.vocab.hash());
  key["train_data_hash"] = std::to_string(data_hash);
  const std::string key_text = key.dump();
  if (ckpt && ckpt->key != key_text) {
    const auto theirs = nlohmann::json::parse(ckpt->key);
    std::string diff;
    for (const auto& [k, v] : key.items())
      if (!theirs.contains(k) || theirs[k] != v) diff += (diff.empty() ? "" : ", ") + k + " (" + (theirs.contains(k) ? theirs[k].dump() : "absent") + " there, " + v.dump() + " here)";
    pld::detail::throw_error("checkpoint ", resume, " is from another configuration: ", diff.empty() ? "keys differ" : diff);
  }

  // The model and its optimizer on their device (a GPU that is missing fails here, before any write).
  std::unique_ptr<Trainer> trainer;
  if (gpu) trainer = cuda(mc, opt_cfg, gpu_precision);
  else trainer = std::make_unique<CpuTrainer>(mc, opt_cfg);
  // Data parallel: the gradients are summed where they live, over `comm` for host memory, over the
  // trainer's own communicator for a GPU's (NCCL, set up through `comm`; a failure stops here too).
  pld::dist::Communicator& grad_comm = world > 1 ? trainer->gradient_communicator(comm) : comm;

  // Everything checked: from here on the run writes (rank 0 alone).
  if (root) {
    fs::create_directories(out_dir);
    remove_stale_temp_files(out_dir);
    if (data.vocab_trained) {
      data.vocab.save(data.vocab_path);
      out << "vocabulary saved to " << data.vocab_path << "\n";
    }
  }
  const int ranks_before = [&] {  // the world size that wrote the run being resumed, if recorded
    if (!ckpt) return 0;
    try {
      std::ifstream in(out_dir + "/options.json");
      return nlohmann::json::parse(in).value("ranks", 1);
    } catch (const std::exception&) {
      return 0;
    }
  }();
  pld::Controller controller(pld::make_schedule(schedule_spec_from(o, mc.layers)), gate_cfg);
  MlmStream stream(&train, mc.max_len, mc.vocab, seed, mask_prob);
  std::int64_t start = 0;
  double elapsed_before = 0.0;
  if (ckpt) {
    trainer->restore(*ckpt, resume);
    controller.restore_state(ckpt->controller_state);
    stream.seek(ckpt->data_position);
    start = ckpt->step;
    elapsed_before = ckpt->elapsed_seconds;
    out << "resumed from " << resume << " at step " << start << "\n";
    if (ranks_before > 0 && ranks_before != world)
      out << "the checkpoint was written by " << ranks_before << " rank(s), this run has " << world
          << ": the same global batches from the same data position, other shards\n";
  }
  // The batches from here on, masked ahead on a thread of their own (the same batches in the same
  // order: the numbers do not change).
  BatchPrefetcher batches(stream, batch);
  const std::int64_t end = stop_at > 0 ? std::min(stop_at, steps) : steps;
  const std::string metrics_path = out_dir + "/metrics.jsonl";
  if (root) {
    if (ckpt) truncate_metrics(metrics_path, start); else write_file_atomically(metrics_path, "");
  }
  std::ofstream metrics;  // not opened on other ranks: writes to it are no-ops there
  if (root) metrics.open(metrics_path, std::ios::app);
  if (root) {
    nlohmann::json opts = o.to_json();
    opts["model"] = {{"vocab", mc.vocab}, {"layers", mc.layers}, {"hidden", mc.hidden}, {"heads", mc.heads}, {"ffn", mc.layer_config().ffn_size()},
                     {"max_len", mc.max_len}, {"parameters", trainer->num_parameters()}};
    opts["engine"] = engine_info(*trainer);
    opts["ranks"] = world;
    write_file_atomically(out_dir + "/options.json", opts.dump(2) + "\n");
  }
  if (world > 1)
    out << "data parallel: " << world << " ranks over " << comm.name()
        << (&grad_comm != &comm ? std::string(", gradients over ") + grad_comm.name() : std::string()) << ", " << shard << " of the "
        << batch << " sequences of each global batch per rank\n";
  out << "model: L=" << mc.layers << " H=" << mc.hidden << " heads=" << mc.heads << " F=" << mc.layer_config().ffn_size() << " vocab=" << mc.vocab
      << ", " << trainer->num_parameters() << " parameters; PLD " << o.str("pld") << ", " << omp_get_max_threads() << " threads\n";
  out << "engine: " << trainer->engine().line << "\n";
  out << "reference lines for the validation MLM loss: unigram " << format_number(refs.unigram) << " (training-split token frequencies), uniform ln V "
      << format_number(refs.uniform) << "\n";

  std::int64_t last_saved = ckpt ? start : -1;  // the step of the newest checkpoint on disk
  const StopOnSignals stop_on_signals;  // SIGTERM / SIGINT: checkpoint after the current step, then exit
  double train_seconds = 0;  // time in training steps only (no eval, no checkpoint)
  double layer_seconds = 0;  // of which inside the encoder layers
  const bool loss_scaled = gpu && gpu_precision == GpuPrecision::fp16;
  auto save = [&](std::int64_t step_done, double elapsed) {
    Checkpoint c;
    c.key = key_text;
    c.step = step_done;
    c.data_position = batches.position();
    c.elapsed_seconds = elapsed;
    c.controller_state = controller.save_state();
    trainer->capture(c);
    if (root) write_file_atomically(ckpt_path, serialize_checkpoint(c));
    last_saved = step_done;
  };
  // One bucket per encoder layer plus one for the embeddings and the head (world > 1 only: the
  // buckets' staging memory is as large as the gradients).
  std::optional<pld::dist::GradientReducer> reducer;
  if (world > 1) {
    reducer.emplace(grad_comm, mc.layers);
    for (const Trainer::Gradient& g : trainer->gradients()) reducer->add(g.layer, g.data, g.size);
  }
  MlmBatch local_batch;
  auto eval = [&](std::int64_t step_done) {
    const auto t0 = std::chrono::steady_clock::now();
    const EvalResult e = evaluate_mlm(*trainer, valid, eval_max, batch, mc.max_len, mc.vocab, seed, mask_prob, controller.gate(), step_done,
                                      world > 1 ? &comm : nullptr);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    out << "eval step " << step_done << ": validation MLM loss " << e.loss << ", accuracy " << e.accuracy << " (" << e.predicted
        << " masked tokens, " << format_duration(s) << ")\n";
    metrics << nlohmann::json{{"step", step_done}, {"split", "validation"}, {"mlm_loss", e.loss}, {"mlm_accuracy", e.accuracy},
                              {"masked_tokens", e.predicted}, {"elapsed_s", elapsed_before + train_seconds},
                              {"unigram_loss", refs.unigram}, {"uniform_loss", refs.uniform}}
                   .dump()
            << "\n";
    metrics.flush();
    return e;
  };

  double kept_sum = 0;  // sum over steps of the fraction of layer work done (LayerPlan::kept_fraction)
  double loss_window = 0, acc_window = 0, kept_window = 0, expected_window = 0;
  std::int64_t window = 0, tokens_window = 0;
  double window_seconds = 0;
  MlmBatch b;
  const auto run_start = std::chrono::steady_clock::now();
  EvalResult last_eval;
  bool evaluated_at_end = false;
  int agreed_stop = 0;  // data-parallel runs: the stop request all ranks agreed on this step
  for (std::int64_t step = start; step < end; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    const pld::LayerPlan& plan = controller.begin_step(step, gate_cfg.granularity == pld::Granularity::sample ? batch : 0);
    const double layer_before = trainer->layer_seconds();
    trainer->zero_grad();
    if (reducer) reducer->begin_step(plan);
    double loss = 0;
    int correct = 0, predicted = 0;
    std::int64_t tokens = 0;
    for (int a = 0; a < accum; ++a) {
      batches.next(b);  // the global batch, the same on every rank
      if (world == 1) {
        const MlmResult r = trainer->step(b, plan, seed, true, 1.0 / accum);
        loss += r.loss / accum;
        correct += r.correct;
        predicted += r.predicted;
        tokens += b.real_tokens;
        continue;
      }
      // This rank's shard. The loss is the mean over the global batch's masked tokens, so a
      // shard's gradient weighs by its share of them (ranks see different numbers of masks):
      // scale world * masked_here / masked_global, and the reducer's average divides by world.
      b.slice_into(first_row, shard, local_batch);
      const double share = b.masked > 0 ? static_cast<double>(local_batch.masked) / b.masked : 0.0;
      // On the last micro-batch each layer's all-reduce starts as soon as its backward is done,
      // overlapping the backward of the layers below it.
      const auto done = [&](int l) { reducer->layer_done(l); };
      const MlmResult r = trainer->step(local_batch, plan, seed, true, world * share / accum, first_row,
                                     a + 1 == accum ? std::function<void(int)>(done) : std::function<void(int)>());
      loss += r.loss * share / accum;  // summed over ranks below: the global mean
      correct += r.correct;
      predicted += r.predicted;
      tokens += local_batch.real_tokens;
    }
    if (reducer) {
      reducer->finish();
      double sums[5] = {loss, static_cast<double>(correct), static_cast<double>(predicted), static_cast<double>(tokens),
                        static_cast<double>(StopOnSignals::requested())};
      comm.sum_now(sums, 5);  // the step's loss and counts, and whether any rank was asked to stop
      loss = sums[0];
      correct = static_cast<int>(sums[1]);
      predicted = static_cast<int>(sums[2]);
      tokens = static_cast<std::int64_t>(sums[3]);
      // Stop together: the ranks act on the summed flag, never on their own (a signal arriving
      // after this sum is counted in the next step's), so no rank leaves the others waiting.
      agreed_stop = sums[4] > 0 ? (StopOnSignals::requested() ? StopOnSignals::requested() : SIGTERM) : 0;
    }
    // fp16 on the GPU: scaled gradients that overflowed skip the step (update() changes nothing and
    // the loss scale backs off); anywhere else a non-finite norm is divergence.
    const Trainer::Norm norm = trainer->clip();
    const double gnorm = norm.norm;
    if (!std::isfinite(loss) || (!norm.overflow && !std::isfinite(gnorm)) || (max_loss > 0 && loss > max_loss)) {
      metrics.flush();
      char what[160];
      std::snprintf(what, sizeof what, "loss %.4g, gradient norm %.4g%s", loss, gnorm,
                    !std::isfinite(loss) || !std::isfinite(gnorm) ? " (not finite)" : "");
      pld::detail::throw_error("training diverged at step ", step + 1, ": ", what,
                               max_loss > 0 && loss > max_loss ? " above --max-loss " + format_number(max_loss) : std::string(), "; ",
                               last_saved < 0 ? std::string("no checkpoint was written") : "the last checkpoint (step " + std::to_string(last_saved) + ") is kept",
                               "; try a lower --lr than ", format_number(opt_cfg.lr));
    }
    const double lr = learning_rate(opt_cfg, step, steps);
    trainer->update(lr, plan);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int kept = plan.num_kept();
    std::string layers_ran(static_cast<std::size_t>(mc.layers), '0');
    for (int l = 0; l < mc.layers; ++l) layers_ran[static_cast<std::size_t>(l)] = plan.kept(l) ? '1' : '0';
    const double theta = plan.theta;
    kept_window += static_cast<double>(kept) / mc.layers;
    expected_window += plan.expected_kept_fraction();
    controller.end_step({loss, tokens, sec});
    kept_sum += plan.kept_fraction();  // layer work done: per-sample mode counts rows
    train_seconds += sec;
    layer_seconds += trainer->layer_seconds() - layer_before;
    loss_window += loss;
    acc_window += predicted ? static_cast<double>(correct) / predicted : 0.0;
    tokens_window += tokens;
    window_seconds += sec;
    ++window;
    const std::int64_t done = step + 1;
    if (done % log_every == 0 || done == end) {
      const double tps = tokens_window / std::max(window_seconds, 1e-9);
      const double eta = (end - done) * (window_seconds / window);
      char line[512];
      std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  mlm acc %.3f  theta %.3f  layers %s  lr %.2e  |g| %.2f  %.0f tok/s  ETA %s",
                    static_cast<long long>(done), static_cast<long long>(steps), loss_window / window, acc_window / window, theta,
                    layers_ran.c_str(), lr, gnorm, tps, format_duration(eta).c_str());
      out << line << "\n" << std::flush;
      nlohmann::json rec{{"step", done}, {"split", "train"}, {"loss", loss_window / window}, {"mlm_accuracy", acc_window / window},
                                {"theta", theta}, {"layers", layers_ran}, {"kept_fraction", kept_window / window},
                                {"expected_kept_fraction", expected_window / window},
                                {"lr", lr}, {"grad_norm", gnorm}, {"tokens_per_s", tps},
                                {"elapsed_s", elapsed_before + train_seconds}};
      if (loss_scaled) {
        rec["loss_scale"] = trainer->loss_scale();
        rec["overflow_steps"] = trainer->overflow_steps();  // skipped so far, this process and the ones it resumed
      }
      metrics << rec.dump() << "\n";
      metrics.flush();
      loss_window = acc_window = window_seconds = kept_window = expected_window = 0;
      tokens_window = window = 0;
    }
    const bool last = done == end;
    if ((eval_every > 0 && done % eval_every == 0) || (last && end == steps)) {
      last_eval = eval(done);
      evaluated_at_end = last;
    }
    if ((ckpt_every > 0 && done % ckpt_every == 0) || last) save(done, elapsed_before + train_seconds);
    if (const int sig = reducer ? agreed_stop : StopOnSignals::requested()) {
      if (last_saved != done) save(done, elapsed_before + train_seconds);
      metrics.flush();
      out << "interrupted by " << signal_name(sig) << " after step " << done << ": checkpoint " << ckpt_path
          << " saved; continue with --resume auto\n" << std::flush;
      return 128 + sig;
    }
  }
  if (start == steps && end == steps) {
    // Training was already done: the final evaluation is the one logged before the last
    // checkpoint, or (if the log lost it) made again from the same weights and the fixed key.
    out << "checkpoint " << resume << " is at the final step " << steps << ": no training left, finishing the run\n";
    if (const auto logged = logged_evaluation(metrics_path, steps)) {
      last_eval = *logged;
    } else {
      last_eval = eval(steps);
    }
    evaluated_at_end = true;
  }
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  const pld::ControllerStats& st = controller.stats();
  nlohmann::json summary = {{"steps_done", end}, {"steps_this_process", end - start}, {"wall_s", wall}, {"train_s", train_seconds},
                            {"train_s_total", elapsed_before + train_seconds},  // every process of the run (resumes included)
                            {"layer_s", layer_seconds}, {"tokens_per_s", st.tokens_per_second()},
                            {"mean_kept_fraction", (end - start) > 0 ? kept_sum / static_cast<double>(end - start) : 1.0},
                            {"layer_work_saved", st.layer_work_saved()}, {"checkpoint", ckpt_path}, {"engine", engine_info(*trainer)},
                            {"validation_unigram_loss", refs.unigram}, {"validation_uniform_loss", refs.uniform}};
  out << "done: " << end << "/" << steps << " steps (" << (end - start) << " in this process) in " << format_duration(wall) << " ("
      << format_duration(train_seconds) << " training)\n";
  if (evaluated_at_end) {
    summary["validation_mlm_loss"] = last_eval.loss;
    summary["validation_mlm_accuracy"] = last_eval.accuracy;
    out << "validation: MLM loss " << last_eval.loss << ", accuracy " << last_eval.accuracy << "\n";
  }
  // Time of the same steps with every layer kept, from this run's own measurements: the encoder
  // layers' measured time per kept layer-step, times every layer-step, plus everything outside the
  // layers as measured. The layers are identical in shape, so a layer-step costs the same whichever
  // layer it is. (Session 2 fitted a line over steps instead; this has no fit and less noise.)
  const double layer_steps = kept_sum * mc.layers;  // kept layer-steps in this process
  if (loss_scaled) {
    summary["overflow_steps"] = trainer->overflow_steps();
    summary["loss_scale"] = trainer->loss_scale();
  }
  if (end > start && layer_steps > 0) {
    const double per_layer_step = layer_seconds / layer_steps;
    const double all_layer_steps = static_cast<double>(end - start) * mc.layers;
    const double full = train_seconds - layer_seconds + per_layer_step * all_layer_steps;
    summary["seconds_per_layer_step"] = per_layer_step;
    summary["train_s_estimated_without_dropping"] = full;
    summary["speedup_vs_no_dropping"] = full / train_seconds;
    out << "time: " << train_seconds << " s training, " << layer_seconds << " s of it in the layers (" << per_layer_step
        << " s per kept layer-step); with all " << mc.layers << " layers every step: " << full << " s -> speedup "
        << full / train_seconds << "x from " << 100.0 * (1.0 - kept_sum / static_cast<double>(end - start))
        << "% of layer-steps dropped\n";
  }
  summary["ranks"] = world;
  if (root) write_file_atomically(out_dir + "/summary.json", summary.dump(2) + "\n");
  out << "checkpoint: " << ckpt_path << ", metrics: " << metrics_path << "\n";
  return 0;
}

}  // namespace bert
