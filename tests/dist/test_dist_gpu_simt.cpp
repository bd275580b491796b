// `mpirun -np 2 pld-bert pretrain --device cuda`, with pld-bert's GPU trainer on the SIMT emulator
// (CTest dist.gpu-simt): the data-parallel path of the GPU trainer, i.e. each rank's shard run at
// its global rows (dropout keyed there, per-sample plans read there), the trainer's own gradients
// registered with the reducer and each layer's all-reduce started from the GPU stack's backward,
// against the same trainer in one process over the whole batch. The emulator's "device" memory is
// host memory, so the gradients are summed over MPI here; on GPUs pld-bert sums them over NCCL
// (cuda_trainer.cu), which this cannot run. Rank 0 compares.
//
// Bounds: the two runs differ in the order of fp32 additions only (each rank's weight gradients
// sum its own token rows, the all-reduce adds the two): every step's loss within 1e-6 relative,
// gradient norm within 1e-5, final weights within relative L2 1e-5 (as dist.pld-bert on the CPU).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "../bert_run_metrics.hpp"
#include "../cuda/simt_trainer.hpp"
#include "pld/dist/mpi.hpp"
#include "pretrain.hpp"

namespace {

pld::dist::MpiCommunicator& comm() {
  static pld::dist::MpiCommunicator c(MPI_COMM_WORLD, std::chrono::seconds(300));
  return c;
}

// A directory every rank names alike (rank 0's process id), emptied by rank 0.
std::string shared_dir(const std::string& name) {
  double pid = comm().rank() == 0 ? static_cast<double>(::getpid()) : 0.0;
  comm().sum_now(&pid, 1);
  const auto dir = std::filesystem::temp_directory_path() / ("pld-dist-gpu-simt-" + std::to_string(static_cast<long>(pid))) / name;
  if (comm().rank() == 0) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir.parent_path());
  }
  double barrier = 0.0;
  comm().sum_now(&barrier, 1);
  return dir.string();
}

std::vector<std::string> args(const std::string& out, const std::vector<std::string>& extra) {
  std::vector<std::string> a = {"--corpus", std::string(PLD_TEST_DATA_DIR) + "/brown-slice", "--out", out, "--layers", "3", "--hidden", "32",
                                "--heads", "2", "--max-len", "16", "--batch", "4", "--vocab-size", "400", "--steps", "8",
                                "--eval-every", "0", "--log-every", "1", "--warmup", "2", "--pld", "pld", "--gamma", "0.3",
                                "--checkpoint-every", "0", "--threads", "1", "--device", "cuda", "--precision", "fp32"};
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

// One process, then 2 ranks, on the same options; rank 0 checks. Returns the number of steps on
// which the plan dropped a layer.
int one_vs_two(const std::string& name, const std::vector<std::string>& extra) {
  const auto factory = pld::test::simt_trainer_factory();
  const std::string one = shared_dir(name + "-one"), two = shared_dir(name + "-two");
  std::ostringstream log_one, log_two;
  if (comm().rank() == 0) REQUIRE(bert::run_pretrain(args(one, extra), log_one, nullptr, factory) == 0);
  // The 2-rank run uses the vocabulary the first one trained (no rank trains one).
  std::vector<std::string> with_vocab = extra;
  with_vocab.insert(with_vocab.end(), {"--vocab", one + "/vocab.txt"});
  double barrier = 0.0;
  comm().sum_now(&barrier, 1);
  REQUIRE(bert::run_pretrain(args(two, with_vocab), log_two, &comm(), factory) == 0);
  if (comm().rank() != 0) return 0;
  INFO(log_two.str());
  CHECK(log_two.str().find("data parallel: 2 ranks over MPI, 2 of the 4 sequences") != std::string::npos);
  // Every step's plan, loss and norm, and the final evaluation, sharded over the ranks: the same
  // masked tokens, the one-process loss.
  const bert_test::Metrics a = bert_test::read_metrics(one), b = bert_test::read_metrics(two);
  REQUIRE(a.train.size() == 8);
  REQUIRE(a.validation.size() == 1);
  bert_test::compare_runs(b, a, 1e-6, 1e-5);
  int dropped = 0;
  for (const auto& r : a.train) dropped += r.at("layers").get<std::string>().find('0') != std::string::npos ? 1 : 0;
  const bert::Checkpoint ca = bert::read_checkpoint(one + "/checkpoint.bin"), cb = bert::read_checkpoint(two + "/checkpoint.bin");
  REQUIRE(ca.names == cb.names);
  double worst = 0.0;
  for (std::size_t t = 0; t < ca.values.size(); ++t) {
    double num = 0.0, den = 0.0;
    for (std::size_t k = 0; k < ca.values[t].size(); ++k) {
      const double d = static_cast<double>(cb.values[t][k]) - ca.values[t][k];
      num += d * d;
      den += static_cast<double>(ca.values[t][k]) * ca.values[t][k];
    }
    worst = std::max(worst, den > 0 ? std::sqrt(num / den) : std::sqrt(num));
  }
  INFO("worst tensor's relative L2 difference " << worst);
  CHECK(worst <= 1e-5);
  WARN(name << ": 2 emulated-GPU ranks == 1 within " << worst << " (relative L2, final weights); steps with a layer dropped: " << dropped);
  return dropped;
}

}  // namespace

TEST_CASE("2 ranks of the emulated GPU trainer train what one process trains: dropout on, layers dropped and their updates skipped",
          "[dist][bert-gpu]") {
  REQUIRE(comm().size() == 2);
  const int dropped = one_vs_two("layer", {"--skip-dropped-updates"});
  if (comm().rank() == 0) CHECK(dropped > 0);  // PLD dropped layers within the run
}

TEST_CASE("2 ranks of the emulated GPU trainer train what one process trains: per-sample plans", "[dist][bert-gpu]") {
  REQUIRE(comm().size() == 2);
  one_vs_two("sample", {"--granularity", "sample"});  // dropout on: masks keyed among the global batch's kept rows
}
