// Communicator over NCCL (target pld::nccl, where CUDA and NCCL are found): the gradient buckets
// live in device memory and are summed by ncclAllReduce on a side stream, so communication
// overlaps the backward running on the compute stream; an event orders each bucket after the
// backward that produced it. wait() polls with a deadline, like MpiCommunicator, and aborts the
// NCCL communicator on timeout so a dead rank is one clear pld::Error, not a hang.
//
// The caller creates the ncclComm_t (ncclCommInitRank with an id it distributed, e.g. over MPI).
// GradientReducer works on it unchanged: its staging buffers are cudaMalloc'd here, its packing
// and unpacking are device-to-device copies on the compute stream, and the mean over ranks is
// taken inside the all-reduce (a pre-multiplied sum). Compiled in CI wherever nvcc and NCCL are;
// tests/cuda/test_cuda_nccl.cu runs it on the GPUs of one machine (not yet run on a GPU).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <cuda_runtime_api.h>
#include <nccl.h>

#include "pld/core/error.hpp"
#include "pld/cuda/error.hpp"
#include "pld/dist/communicator.hpp"

namespace pld::dist {

namespace detail {
inline void nccl_check(ncclResult_t rc, const char* call) {
  if (rc != ncclSuccess) pld::detail::throw_error(call, " failed: ", ncclGetErrorString(rc));
}
}  // namespace detail

class NcclCommunicator final : public Communicator {
 public:
  // `compute` is the stream the backward runs on: a bucket's all-reduce waits for the work queued
  // there before it (an event), and runs on this communicator's own side stream.
  NcclCommunicator(ncclComm_t comm, cudaStream_t compute, std::chrono::seconds timeout = std::chrono::seconds(600))
      : comm_(comm), compute_(compute), timeout_(timeout) {
    detail::nccl_check(ncclCommUserRank(comm_, &rank_), "ncclCommUserRank");
    detail::nccl_check(ncclCommCount(comm_, &size_), "ncclCommCount");
    pld::cuda::check(cudaStreamCreateWithFlags(&side_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  }
  ~NcclCommunicator() override {
    for (auto e : events_) cudaEventDestroy(e);
    if (side_) cudaStreamDestroy(side_);
  }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "NCCL"; }
  cudaStream_t side_stream() const { return side_; }

  // `data` is device memory.
  int start_sum(float* data, std::size_t n) override { return start_scaled_sum(data, n, 1.0f); }
  // data = scale * sum: each rank's values are multiplied by `scale` inside the all-reduce.
  int start_scaled_sum(float* data, std::size_t n, float scale) override {
    cudaEvent_t ready = event();
    pld::cuda::check(cudaEventRecord(ready, compute_), "cudaEventRecord");
    pld::cuda::check(cudaStreamWaitEvent(side_, ready, 0), "cudaStreamWaitEvent");
    free_.push_back(ready);  // the wait captured it; it may be recorded again
    if (scale == 1.0f) {
      detail::nccl_check(ncclAllReduce(data, data, n, ncclFloat, ncclSum, comm_, side_), "ncclAllReduce");
    } else {
      ncclRedOp_t op;
      detail::nccl_check(ncclRedOpCreatePreMulSum(&op, &scale, ncclFloat, ncclScalarHostImmediate, comm_), "ncclRedOpCreatePreMulSum");
      const ncclResult_t rc = ncclAllReduce(data, data, n, ncclFloat, op, comm_, side_);
      ncclRedOpDestroy(op, comm_);  // allowed once the call that uses it has returned
      detail::nccl_check(rc, "ncclAllReduce");
    }
    cudaEvent_t done = event();
    pld::cuda::check(cudaEventRecord(done, side_), "cudaEventRecord");
    pending_.push_back(done);
    return static_cast<int>(pending_.size()) - 1;
  }

  void wait(int handle) override {
    if (handle < 0 || static_cast<std::size_t>(handle) >= pending_.size()) pld::detail::throw_error("NcclCommunicator::wait: no request ", handle);
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (true) {
      const cudaError_t q = cudaEventQuery(pending_[static_cast<std::size_t>(handle)]);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) pld::cuda::check(q, "cudaEventQuery");
      ncclResult_t async = ncclSuccess;
      detail::nccl_check(ncclCommGetAsyncError(comm_, &async), "ncclCommGetAsyncError");
      detail::nccl_check(async, "ncclAllReduce (asynchronous)");
      if (std::chrono::steady_clock::now() > deadline) {
        ncclCommAbort(comm_);
        pld::detail::throw_error("rank ", rank_, ": a gradient all-reduce did not complete in ", timeout_.count(),
                                 " s; another rank has probably died (NCCL communicator aborted)");
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    // The compute stream must not touch the reduced gradients before the all-reduce is done.
    pld::cuda::check(cudaStreamWaitEvent(compute_, pending_[static_cast<std::size_t>(handle)], 0), "cudaStreamWaitEvent");
    if (++waited_ == pending_.size()) {  // every started sum waited for: recycle the events
      for (auto e : pending_) free_.push_back(e);
      pending_.clear();
      waited_ = 0;
    }
  }

  // Device memory for GradientReducer's staging; copies on the compute stream (any direction:
  // unified addressing).
  float* allocate(std::size_t n) override {
    float* p = nullptr;
    if (n) pld::cuda::check(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc");
    return p;
  }
  void deallocate(float* p) noexcept override {
    if (p) cudaFree(p);
  }
  void copy(float* dst, const float* src, std::size_t n) override {
    if (n) pld::cuda::check(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDefault, compute_), "cudaMemcpyAsync");
  }

  // Host values: staged through device memory once per call (small: losses, counts).
  void sum_now(double* data, std::size_t n) override {
    double* d = nullptr;
    pld::cuda::check(cudaMalloc(&d, n * sizeof(double)), "cudaMalloc");
    pld::cuda::check(cudaMemcpy(d, data, n * sizeof(double), cudaMemcpyHostToDevice), "cudaMemcpy");
    const ncclResult_t rc = ncclAllReduce(d, d, n, ncclDouble, ncclSum, comm_, side_);
    if (rc == ncclSuccess) pld::cuda::check(cudaStreamSynchronize(side_), "cudaStreamSynchronize");
    if (rc == ncclSuccess) pld::cuda::check(cudaMemcpy(data, d, n * sizeof(double), cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(d);
    detail::nccl_check(rc, "ncclAllReduce");
  }

  void min_max(std::uint64_t value, std::uint64_t& min, std::uint64_t& max) override {
    std::uint64_t h[2] = {value, ~value};
    std::uint64_t* d = nullptr;
    pld::cuda::check(cudaMalloc(&d, sizeof h), "cudaMalloc");
    pld::cuda::check(cudaMemcpy(d, h, sizeof h, cudaMemcpyHostToDevice), "cudaMemcpy");
    const ncclResult_t rc = ncclAllReduce(d, d, 2, ncclUint64, ncclMax, comm_, side_);
    if (rc == ncclSuccess) pld::cuda::check(cudaStreamSynchronize(side_), "cudaStreamSynchronize");
    if (rc == ncclSuccess) pld::cuda::check(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "cudaMemcpy");
    cudaFree(d);
    detail::nccl_check(rc, "ncclAllReduce");
    max = h[0];
    min = ~h[1];
  }

 private:
  cudaEvent_t event() {
    if (!free_.empty()) {
      cudaEvent_t e = free_.back();
      free_.pop_back();
      return e;
    }
    cudaEvent_t e = nullptr;
    pld::cuda::check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    events_.push_back(e);
    return e;
  }

  ncclComm_t comm_;
  cudaStream_t compute_;
  cudaStream_t side_ = nullptr;
  std::chrono::seconds timeout_;
  int rank_ = 0, size_ = 1;
  std::vector<cudaEvent_t> events_, free_, pending_;
  std::size_t waited_ = 0;
};

}  // namespace pld::dist
