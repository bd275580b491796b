// NcclCommunicator and GradientReducer over NCCL on the GPUs of this machine: one rank per GPU (at
// most 4), one host thread each, communicators from ncclCommInitAll. With one GPU the sums are over
// one rank, which still runs every call: the device staging buffers, the copies on the compute
// stream, the pre-multiplied sum that takes the mean, the events between the streams, the plan
// check, the blocking sums. Rank r's gradients are (r + 1) times a known pattern, so the mean over
// R ranks is (R + 1) / 2 times it; a layer the plan drops is sent by no rank and left as it was.
// (tests/test_dist_reducer.cpp checks on every machine that the reducer never touches the
// communicator's memory itself; tests/dist runs it over MPI.)
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "pld/dist/nccl.hpp"
#include "pld/dist/reducer.hpp"

namespace {

pld::LayerPlan plan_of(std::int64_t step, std::vector<std::uint8_t> keep) {
  pld::LayerPlan p;
  p.step = step;
  p.keep = std::move(keep);
  p.scale.assign(p.keep.size(), 1.0);
  return p;
}

// One rank's run; returns "" or what went wrong (Catch's assertions are not thread-safe).
std::string run_rank(int rank, int ranks, ncclComm_t nccl) {
  try {
    pld::cuda::check(cudaSetDevice(rank), "cudaSetDevice");
    cudaStream_t stream = nullptr;
    pld::cuda::check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    std::string err;
    {
      pld::dist::NcclCommunicator comm(nccl, stream, std::chrono::seconds(60));
      if (comm.rank() != rank || comm.size() != ranks) return "rank/size " + std::to_string(comm.rank()) + "/" + std::to_string(comm.size());
      pld::dist::GradientReducer reducer(comm, 2, {/*check_every=*/1});
      // Layer 0: 1000 floats in two tensors, layer 1: 300, outside the layers: 7 (odd sizes).
      const std::vector<std::size_t> sizes{600, 400, 300, 7};
      const std::vector<int> layer_of{0, 0, 1, -1};
      std::vector<float*> d(sizes.size());
      for (std::size_t t = 0; t < sizes.size(); ++t) {
        pld::cuda::check(cudaMalloc(&d[t], sizes[t] * sizeof(float)), "cudaMalloc");
        reducer.add(layer_of[t], d[t], sizes[t]);
      }
      const auto pattern = [](std::size_t t, std::size_t i) { return static_cast<float>((t + 1) * 0.5 + static_cast<double>(i % 37) * 0.25); };
      const double mean = (ranks + 1) / 2.0;
      for (std::int64_t step = 0; step < 3 && err.empty(); ++step) {
        std::vector<std::vector<float>> h(sizes.size());
        for (std::size_t t = 0; t < sizes.size(); ++t) {
          h[t].resize(sizes[t]);
          for (std::size_t i = 0; i < sizes[t]; ++i) h[t][i] = static_cast<float>(rank + 1) * pattern(t, i);
          // Written on the compute stream right before the step: the reducer's copies and the
          // all-reduce must be ordered after it (events), never racing it.
          pld::cuda::check(cudaMemcpyAsync(d[t], h[t].data(), sizes[t] * sizeof(float), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync");
        }
        const bool drop1 = step == 1;
        reducer.begin_step(plan_of(step, {1, static_cast<std::uint8_t>(drop1 ? 0 : 1)}));
        reducer.layer_done(1);
        reducer.layer_done(0);
        const pld::dist::StepTraffic tr = reducer.finish();
        const std::size_t want_bytes = (drop1 ? 1007 : 1307) * sizeof(float);
        if (tr.bytes != want_bytes) err = "step " + std::to_string(step) + ": " + std::to_string(tr.bytes) + " bytes sent";
        for (std::size_t t = 0; t < sizes.size() && err.empty(); ++t) {
          pld::cuda::check(cudaMemcpyAsync(h[t].data(), d[t], sizes[t] * sizeof(float), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
          pld::cuda::check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
          const double factor = (drop1 && layer_of[t] == 1) ? rank + 1.0 : mean;
          for (std::size_t i = 0; i < sizes[t]; ++i) {
            const double want = factor * pattern(t, i);
            if (std::abs(h[t][i] - want) > 1e-5 * std::abs(want)) {
              err = "step " + std::to_string(step) + " tensor " + std::to_string(t) + " [" + std::to_string(i) + "] = " +
                    std::to_string(h[t][i]) + ", want " + std::to_string(want);
              break;
            }
          }
        }
      }
      if (err.empty()) {
        double v[2] = {1.5, -2.0};
        comm.sum_now(v, 2);
        if (v[0] != 1.5 * ranks || v[1] != -2.0 * ranks) err = "sum_now " + std::to_string(v[0]);
        std::uint64_t lo = 0, hi = 0;
        comm.min_max(static_cast<std::uint64_t>(10 + rank), lo, hi);
        if (lo != 10 || hi != static_cast<std::uint64_t>(9 + ranks)) err = "min_max " + std::to_string(lo) + " " + std::to_string(hi);
        try {
          comm.wait(5);
          err = "wait(5) with nothing started did not throw";
        } catch (const pld::Error&) {
        }
      }
      for (float* p : d) cudaFree(p);
    }
    cudaStreamDestroy(stream);
    return err;
  } catch (const std::exception& e) {
    return e.what();
  }
}

}  // namespace

TEST_CASE("NCCL: GradientReducer takes the mean of device gradients over this machine's GPUs, a dropped layer sends nothing", "[cuda][nccl]") {
  int devices = 0;
  REQUIRE(cudaGetDeviceCount(&devices) == cudaSuccess);
  const int ranks = std::min(devices, 4);
  std::vector<int> devs(static_cast<std::size_t>(ranks));
  std::iota(devs.begin(), devs.end(), 0);
  std::vector<ncclComm_t> comms(static_cast<std::size_t>(ranks));
  const ncclResult_t rc = ncclCommInitAll(comms.data(), ranks, devs.data());
  INFO("ncclCommInitAll: " << ncclGetErrorString(rc));
  REQUIRE(rc == ncclSuccess);
  std::vector<std::string> errors(static_cast<std::size_t>(ranks));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] { errors[static_cast<std::size_t>(r)] = run_rank(r, ranks, comms[static_cast<std::size_t>(r)]); });
  for (auto& t : threads) t.join();
  for (auto c : comms) ncclCommDestroy(c);
  for (int r = 0; r < ranks; ++r) {
    INFO("rank " << r << " of " << ranks);
    CHECK(errors[static_cast<std::size_t>(r)] == "");
  }
}
