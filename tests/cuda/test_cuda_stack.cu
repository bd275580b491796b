// The CUDA layer stack (pld::cuda::LayerStack) on a GPU against a stack of CPU layers in double,
// under real PLD plans per layer and per sample (tests/cuda/stack_case.hpp, which the host
// emulation in tests/test_cuda_emulated.cpp runs in CI too), and its arena on the device.
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "pld/cuda.hpp"
#include "stack_case.hpp"

namespace pc = pld::cuda;

namespace {

template <class T>
pld::test::StackOutputs run_gpu_stack(const pld::test::StackCase& k, const pld::test::StackInputs& in) {
  pc::Stream stream;
  cudaStream_t st = stream.get();
  pc::LayerStack<T> stack(k.config, k.layers);
  for (int l = 0; l < k.layers; ++l) {
    pld::cpu::LayerParams<double> p = in.params[static_cast<std::size_t>(l)];
    stack.layer(l).params().upload(p, st);
    stack.layer(l).grads().zero(st);
  }
  stack.reserve(k.batch, k.seq);
  auto x = pc::to_device(pld::test::to_storage<T>(in.x), st);
  auto d = pc::to_device(pld::test::to_storage<T>(in.dy), st);
  pc::DeviceArray<std::uint8_t> valid;
  if (!in.valid.empty()) valid = pc::to_device(in.valid, st);
  stack.forward(x.data(), k.batch, k.seq, in.valid.empty() ? nullptr : valid.data(), in.plan, in.dropout_seed, st);
  stack.backward(d.data(), st);
  stream.synchronize();
  CHECK(stack.allocations() == 1);  // reserve() sized it; the step allocated nothing
  pld::test::StackOutputs out;
  out.y = pld::test::from_storage(pc::to_host(x.data(), in.x.size(), st));
  out.dx = pld::test::from_storage(pc::to_host(d.data(), in.dy.size(), st));
  for (int l = 0; l < k.layers; ++l) {
    out.grads.emplace_back(k.config);
    stack.layer(l).grads().download(out.grads.back(), st);
  }
  return out;
}

}  // namespace

TEMPLATE_TEST_CASE("CUDA layer stack matches a stack of CPU layers under PLD plans", "[cuda][stack]", float, pc::bf16, pc::fp16) {
  pld::test::StackCase k;
  k.config = pld::test::test_config(64, 4);
  k.layers = 5;
  k.seq = 24;
  SECTION("per layer") {}
  SECTION("per sample") { k.granularity = pld::Granularity::sample; }
  pld::test::check_stack_case<TestType>(k, [&](const pld::test::StackInputs& in) { return run_gpu_stack<TestType>(k, in); }, "gpu");
}
