// `pld-bert pretrain --device cuda`: pretrain.hpp's loop with the GPU trainer (cuda_trainer.cuh)
// on the SIMT emulator (the real kernels on host memory, emulated cuBLASLt products), against the
// same loop on the CPU: every step's loss, gradient norm and plan, the evaluations, a checkpoint
// moving CPU -> GPU -> CPU in the middle of a run, fp16's loss scaling (overflow steps skipped,
// counted, resumed) and bf16. What it cannot show: speed, device memory, cuBLASLt itself.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "bert_run_metrics.hpp"
#include "bert_test_util.hpp"
#include "cuda/simt_trainer.hpp"
#include "pretrain.hpp"

namespace {
using bert_test::compare_runs;
using bert_test::fresh_dir;
using bert_test::Metrics;
using bert_test::read_metrics;
using bert_test::rel;
using bert_test::kSlice;

// 2 layers of H = 32, sequences of 16, batches of 4; a PLD schedule that drops layers within a
// few steps, dropped layers' updates skipped, every step logged, two evaluations.
std::vector<std::string> loop_args(const std::string& out, std::vector<std::string> extra = {}) {
  std::vector<std::string> a = {"--corpus", kSlice, "--out", out, "--layers", "2", "--hidden", "32", "--heads", "2", "--max-len", "16",
                                "--batch", "4", "--vocab-size", "400", "--steps", "8", "--eval-every", "4", "--eval-max-seqs", "16",
                                "--log-every", "1", "--warmup", "2", "--pld", "pld", "--gamma", "0.3", "--skip-dropped-updates",
                                "--checkpoint-every", "0", "--threads", "1"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

int pretrain(const std::vector<std::string>& args, const bert::TrainerFactory& cuda, std::string* log = nullptr) {
  std::ostringstream out;
  const int rc = bert::run_pretrain(args, out, nullptr, cuda);
  if (log) *log = out.str();
  return rc;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  return nlohmann::json::parse(in);
}
}  // namespace

// fp32 storage: the emulated GPU differs from the CPU in summation order only. Measured (session
// 16): losses within 3.1e-8 relative over the 8 steps; bounds 1e-5 (losses) and 1e-4 (norms).
TEST_CASE("pretrain --device cuda (emulated) trains like the CPU: every step's loss, norm and plan, the evaluations", "[bert-gpu][loop]") {
  const std::string cpu = fresh_dir("loop-cpu"), gpu = fresh_dir("loop-gpu");
  const auto factory = pld::test::simt_trainer_factory();
  REQUIRE(pretrain(loop_args(cpu, {"--precision", "fp32"}), nullptr) == 0);
  std::string log;
  REQUIRE(pretrain(loop_args(gpu, {"--device", "cuda", "--precision", "fp32"}), factory, &log) == 0);
  CHECK(log.find("engine: cuBLASLt products and pld's CUDA kernels on the SIMT emulator, fp32 weights") != std::string::npos);
  const Metrics m_cpu = read_metrics(cpu), m_gpu = read_metrics(gpu);
  REQUIRE(m_cpu.train.size() == 8);
  // The schedule dropped a layer on some step (else the plans' agreement would say little).
  bool dropped = false;
  for (const auto& r : m_cpu.train) dropped = dropped || r.at("layers").get<std::string>().find('0') != std::string::npos;
  CHECK(dropped);
  const double worst = compare_runs(m_gpu, m_cpu, 1e-5, 1e-4);
  WARN("worst relative loss difference GPU (emulated, fp32) vs CPU over 8 steps: " << worst);
  const auto summary = read_json(gpu + "/summary.json");
  CHECK(summary.at("engine").at("device") == "cuda");
  CHECK(summary.at("engine").at("gpu") == "the SIMT emulator");
  // The layers' time from the backend's events (the emulator's are the host clock's): a part of
  // the training time, and the no-dropping estimate made from it as on the CPU.
  CHECK(summary.at("layer_s").get<double>() > 0.0);
  CHECK(summary.at("layer_s").get<double>() < summary.at("train_s").get<double>());
  CHECK(summary.at("speedup_vs_no_dropping").get<double>() > 1.0);
  CHECK(rel(summary.at("validation_mlm_loss").get<double>(), read_json(cpu + "/summary.json").at("validation_mlm_loss").get<double>()) <= 1e-5);
  CHECK(read_json(gpu + "/options.json").at("engine").at("precision") == "fp32");
}

// Post-LN (--norm post, the ablation's BERT baseline row) on the emulated GPU: the same bounds.
TEST_CASE("pretrain --device cuda --norm post (emulated) trains like the CPU", "[bert-gpu][loop]") {
  const std::string cpu = fresh_dir("loop-post-cpu"), gpu = fresh_dir("loop-post-gpu");
  const auto factory = pld::test::simt_trainer_factory();
  REQUIRE(pretrain(loop_args(cpu, {"--precision", "fp32", "--norm", "post"}), nullptr) == 0);
  REQUIRE(pretrain(loop_args(gpu, {"--device", "cuda", "--precision", "fp32", "--norm", "post"}), factory) == 0);
  const double worst = compare_runs(read_metrics(gpu), read_metrics(cpu), 1e-5, 1e-4);
  WARN("worst relative loss difference GPU (emulated, fp32, Post-LN) vs CPU over 8 steps: " << worst);
  CHECK(read_json(gpu + "/options.json").at("norm") == "post");
}

// The checkpoint format is the CPU's: a run that starts on the CPU, continues on the (emulated)
// GPU and ends on the CPU follows the CPU-only run. Measured (session 16): weights 1.2e-5 lr apart.
TEST_CASE("a checkpoint moves CPU -> emulated GPU -> CPU in the middle of a run", "[bert-gpu][loop][resume]") {
  const std::string whole = fresh_dir("move-whole"), moved = fresh_dir("move-moved");
  const auto factory = pld::test::simt_trainer_factory();
  const std::vector<std::string> fp32 = {"--precision", "fp32"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), fp32.begin(), fp32.end());
    return more;
  };
  REQUIRE(pretrain(loop_args(whole, with({})), nullptr) == 0);
  REQUIRE(pretrain(loop_args(moved, with({"--stop-at", "3"})), nullptr) == 0);
  std::string log;
  REQUIRE(pretrain(loop_args(moved, with({"--device", "cuda", "--resume", "auto", "--stop-at", "6"})), factory, &log) == 0);
  CHECK(log.find("resumed from") != std::string::npos);
  CHECK(bert::read_checkpoint(moved + "/checkpoint.bin").step == 6);
  REQUIRE(pretrain(loop_args(moved, with({"--resume", "auto"})), nullptr) == 0);
  compare_runs(read_metrics(moved), read_metrics(whole), 1e-5, 1e-4);
  const bert::Checkpoint a = bert::read_checkpoint(whole + "/checkpoint.bin"), b = bert::read_checkpoint(moved + "/checkpoint.bin");
  REQUIRE(a.names == b.names);
  CHECK(a.opt_steps == b.opt_steps);
  double worst = 0.0;  // in units of the peak lr (1e-3)
  for (std::size_t k = 0; k < a.names.size(); ++k)
    for (std::size_t i = 0; i < a.values[k].size(); ++i) worst = std::max(worst, std::abs(static_cast<double>(a.values[k][i]) - b.values[k][i]) / 1e-3);
  WARN("worst weight difference after CPU -> GPU -> CPU: " << worst << " lr");
  CHECK(worst <= 1e-2);
  CHECK(b.trainer_state.empty());  // fp32: no loss scale; the file is version 1 as before
}

// fp16 with a loss scale far too large for the first steps: the scaled gradients overflow, the
// steps are skipped (counted in metrics.jsonl and summary.json) and the scale halves until they
// fit; the run then trains. A resumed fp16 run continues at the checkpoint's scale and count.
TEST_CASE("fp16 on the emulated GPU: overflow steps skipped and counted, the scale backs off and resumes", "[bert-gpu][loop][fp16]") {
  const double huge = 16777216.0;  // 2^24, the default maximum: scaled gradients overflow fp16 (65504) at first
  const auto factory = pld::test::simt_trainer_factory(huge);
  const std::string whole = fresh_dir("fp16-whole"), resumed = fresh_dir("fp16-resumed");
  const std::vector<std::string> fp16 = {"--device", "cuda", "--precision", "fp16", "--steps", "24", "--log-every", "1", "--eval-every", "0"};
  auto with = [&](std::vector<std::string> more) {
    more.insert(more.end(), fp16.begin(), fp16.end());
    return more;
  };
  REQUIRE(pretrain(loop_args(whole, with({})), factory) == 0);
  const Metrics m = read_metrics(whole);
  REQUIRE(m.train.size() == 24);
  const auto summary = read_json(whole + "/summary.json");
  const auto overflows = summary.at("overflow_steps").get<std::int64_t>();
  CHECK(overflows >= 1);
  CHECK(overflows < 12);
  WARN("fp16 from a loss scale of 2^24: " << overflows << " overflow steps, final scale " << summary.at("loss_scale").get<double>());
  CHECK(summary.at("loss_scale").get<double>() < huge);
  CHECK(summary.at("engine").at("precision") == "fp16");
  // The first step overflowed; once the count stops growing, steps train: the loss falls.
  CHECK(m.train.front().at("overflow_steps") == 1);
  CHECK(m.train.back().at("overflow_steps") == overflows);
  for (const auto& r : m.train) CHECK(std::isfinite(r.at("loss").get<double>()));
  CHECK(m.train.back().at("loss").get<double>() < m.train.front().at("loss").get<double>());
  // Resumed at step 12: the scale and the count come back from the checkpoint.
  REQUIRE(pretrain(loop_args(resumed, with({"--stop-at", "12"})), factory) == 0);
  CHECK_FALSE(bert::read_checkpoint(resumed + "/checkpoint.bin").trainer_state.empty());
  REQUIRE(pretrain(loop_args(resumed, with({"--resume", "auto"})), factory) == 0);
  const Metrics r = read_metrics(resumed);
  REQUIRE(r.train.size() == m.train.size());
  for (std::size_t i = 0; i < m.train.size(); ++i) {
    INFO("step " << m.train[i].at("step"));
    CHECK(r.train[i].at("loss_scale") == m.train[i].at("loss_scale"));
    CHECK(r.train[i].at("overflow_steps") == m.train[i].at("overflow_steps"));
    CHECK(rel(r.train[i].at("loss").get<double>(), m.train[i].at("loss").get<double>()) <= 1e-6);
  }
}

// bf16 storage is a different model from the first update on (the GPU multiplies with
// bf16-rounded weights); its losses stay near the fp32 run's. Measured: within 2.5e-4 relative over
// the 8 steps; bound 3e-2.
TEST_CASE("bf16 on the emulated GPU trains near the CPU's fp32 run", "[bert-gpu][loop]") {
  const std::string cpu = fresh_dir("bf16-cpu"), gpu = fresh_dir("bf16-gpu");
  REQUIRE(pretrain(loop_args(cpu, {"--precision", "fp32"}), nullptr) == 0);
  REQUIRE(pretrain(loop_args(gpu, {"--device", "cuda"}), pld::test::simt_trainer_factory()) == 0);  // auto: bf16
  CHECK(read_json(gpu + "/summary.json").at("engine").at("precision") == "bf16");
  const Metrics a = read_metrics(cpu), b = read_metrics(gpu);
  REQUIRE(a.train.size() == b.train.size());
  double worst = 0.0;
  for (std::size_t i = 0; i < a.train.size(); ++i) {
    CHECK(b.train[i].at("layers") == a.train[i].at("layers"));
    worst = std::max(worst, rel(b.train[i].at("loss").get<double>(), a.train[i].at("loss").get<double>()));
  }
  WARN("worst relative loss difference GPU (emulated, bf16) vs CPU fp32 over 8 steps: " << worst);
  CHECK(worst <= 3e-2);
}

TEST_CASE("pretrain --device cuda refuses what it cannot run, before writing anything", "[bert-gpu][loop][errors]") {
  const std::string dir = fresh_dir("refused");
  const auto factory = pld::test::simt_trainer_factory();
  CHECK_THROWS_WITH(pretrain(loop_args(dir, {"--device", "cuda"}), nullptr), Catch::Contains("built without CUDA"));
  CHECK_THROWS_WITH(pretrain(loop_args(dir, {"--precision", "fp16"}), nullptr), Catch::Contains("for the GPU"));
  CHECK_FALSE(std::filesystem::exists(dir));
}
