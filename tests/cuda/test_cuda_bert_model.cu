// pld-bert's GPU model (model_logic.hpp over cuda_backend.cuh with pld::cuda::DeviceBackend) on a
// device against the CPU model: the case of tests/cuda/bert_model_case.hpp (loss, hits, every
// parameter gradient by name; dropout on, a layer dropped, per-sample gates, padding) in fp32,
// bf16 and fp16 storage. The same case runs on the SIMT emulator in CI
// (tests/test_bert_gpu_model_simt.cpp); this adds real warps, memory and cuBLASLt.
#include <catch2/catch.hpp>

#include <cstdio>
#include <vector>

#include "bert_model_case.hpp"
#include "cuda_backend.cuh"
#include "cuda_optimizer.cuh"
#include "model_logic.hpp"
#include "pld/cuda.hpp"

namespace pc = pld::cuda;

namespace {

template <class T>
using GpuBert = bert::BasicBertMlm<bert::CudaBackend<T, pc::DeviceBackend<T>>>;

template <class T>
void compare_with_cpu(const pld::LayerPlan& plan, double loss_tol, double grad_tol, const char* label, int row_offset = 0) {
  const bert::ModelConfig c = pld::test::tiny_bert_config();
  const bert::MlmBatch batch = pld::test::tiny_bert_batch(3, 12, c.vocab, 4);
  GpuBert<T> gpu(c);
  using P = typename bert::CudaBackend<T, pc::DeviceBackend<T>>::Param;
  auto values = [](const P& p) {
    const std::vector<T> v = pc::to_host(p.value, p.size, nullptr);
    std::vector<float> f(v.size());
    for (std::size_t k = 0; k < v.size(); ++k) f[k] = pc::to_float(v[k]);
    return f;
  };
  auto grads = [](const P& p) { return pc::to_host(p.grad, p.size, nullptr); };
  const auto got = pld::test::run_bert(gpu, batch, plan, values, grads, row_offset);
  const auto want = pld::test::run_cpu_bert(c, batch, plan, [](float x) { return pc::to_float(pc::from_float<T>(x)); }, row_offset);
  const double worst = pld::test::check_bert_runs(want, got, plan, loss_tol, grad_tol);
  std::printf("rel-error bert-model %s gradients %.3e\n", label, worst);
}

template <class T>
void train_like_cpu(bert::OptimizerKind kind, double loss_tol, double norm_tol, double weight_tol, const char* label) {
  const bert::ModelConfig c = pld::test::tiny_bert_config();
  const bert::MlmBatch batch = pld::test::tiny_bert_batch(3, 12, c.vocab, 4);
  const bert::OptimizerConfig o = pld::test::bert_train_optimizer(kind);
  GpuBert<T> gpu(c);
  bert::CudaOptimizer<T, pc::DeviceBackend<T>> opt(o, gpu.params());
  auto update = [&](double lr, const pld::LayerPlan& plan) { return opt.step(lr, plan).norm; };
  auto read = [&](std::size_t k) { return opt.values(k); };
  const auto got = pld::test::train_bert(gpu, batch, o, update, read);
  const auto want = pld::test::train_cpu_bert(c, batch, o, [](float x) { return pc::to_float(pc::from_float<T>(x)); });
  const double worst = pld::test::check_bert_training(want, got, o, loss_tol, norm_tol, weight_tol);
  std::printf("rel-error bert-train %s weights/lr %.3e\n", label, worst);
}

}  // namespace

// The emulator's bounds, measured there (tests/test_bert_gpu_model_simt.cpp).
TEST_CASE("GPU BERT model equals the CPU model: fp32, a layer dropped, dropout on", "[cuda][bert-gpu]") {
  compare_with_cpu<float>(pld::test::plan_with_a_drop(3, 0), 1e-6, 1e-5, "fp32");
}

// A data-parallel shard at global row 3: dropout keyed there, per-sample plans read there.
TEST_CASE("GPU BERT model equals the CPU model on a data-parallel shard: fp32, per-layer and per-sample gates", "[cuda][bert-gpu]") {
  compare_with_cpu<float>(pld::test::plan_with_a_drop(3, 0), 1e-6, 1e-5, "fp32-shard", 3);
  compare_with_cpu<float>(pld::test::plan_with_a_drop(3, 6), 1e-6, 1e-5, "fp32-shard-per-sample", 3);
}

TEST_CASE("GPU BERT model equals the CPU model: per-sample gates, bf16 and fp16", "[cuda][bert-gpu]") {
  compare_with_cpu<pc::bf16>(pld::test::plan_with_a_drop(3, 3), 1e-3, 3e-2, "bf16");
  compare_with_cpu<pc::fp16>(pld::test::plan_with_a_drop(3, 3), 1e-3, 1e-2, "fp16");
}

TEST_CASE("GPU BERT model trains like the CPU model: AdamW and LAMB, fp32 and bf16", "[cuda][bert-gpu]") {
  train_like_cpu<float>(bert::OptimizerKind::adamw, 1e-6, 1e-6, 2e-3, "fp32-adamw");
  train_like_cpu<float>(bert::OptimizerKind::lamb, 1e-6, 1e-6, 2e-3, "fp32-lamb");
  train_like_cpu<pc::bf16>(bert::OptimizerKind::adamw, 1e-3, 1.5e-2, 4.0, "bf16-adamw");
}

TEST_CASE("GPU BERT model resumes a CPU checkpoint and writes one the CPU reads", "[cuda][bert-gpu]") {
  const double worst = pld::test::resume_like_cpu<GpuBert<float>, bert::CudaOptimizer<float, pc::DeviceBackend<float>>>(2e-3);
  std::printf("rel-error bert-resume fp32 weights/lr %.3e\n", worst);
}
