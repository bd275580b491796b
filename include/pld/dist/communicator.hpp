// What data parallelism needs from a transport, as one small interface: start a sum all-reduce of
// floats in place and wait for it, a blocking sum of a few doubles, and the min and max of one
// integer over all ranks; and the memory those sums work on, with the copies into and out of it,
// so that GradientReducer (pld/dist/reducer.hpp) never touches a buffer itself: host memory by
// default, device memory for NcclCommunicator. MpiCommunicator (pld/dist/mpi.hpp) and
// NcclCommunicator (pld/dist/nccl.hpp) implement it; LocalCommunicator is the one-process case.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace pld::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* name() const = 0;
  // Starts summing data[0..n) over all ranks, in place; returns a handle for wait(). `data` must
  // stay alive and untouched until then.
  virtual int start_sum(float* data, std::size_t n) = 0;
  // Waits for a started sum; throws pld::Error when it fails or takes longer than the timeout.
  virtual void wait(int handle) = 0;
  // Blocking sums of a few values (losses, token counts).
  virtual void sum_now(double* data, std::size_t n) = 0;
  // The smallest and largest `value` over all ranks (blocking): equal iff every rank agrees.
  virtual void min_max(std::uint64_t value, std::uint64_t& min, std::uint64_t& max) = 0;

  // Starts data[0..n) = scale * (the sum over all ranks), in place (scale 1 / size(): the mean).
  // Here each rank's data is scaled before it is sent (host memory); NcclCommunicator scales
  // inside the all-reduce (ncclRedOpCreatePreMulSum).
  virtual int start_scaled_sum(float* data, std::size_t n, float scale) {
    if (scale != 1.0f)
      for (std::size_t i = 0; i < n; ++i) data[i] *= scale;
    return start_sum(data, n);
  }
  // A buffer of n floats in the memory start_sum() works on, and its release.
  virtual float* allocate(std::size_t n) { return n ? new float[n] : nullptr; }
  virtual void deallocate(float* p) noexcept { delete[] p; }
  // dst[0..n) = src[0..n), ordered with the caller's other work on these buffers (for
  // NcclCommunicator: on the compute stream, so a bucket is packed before its all-reduce starts
  // and read back after wait()).
  virtual void copy(float* dst, const float* src, std::size_t n) {
    if (n) std::memcpy(dst, src, n * sizeof(float));
  }
};

// One process: every operation is the identity.
class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* name() const override { return "local"; }
  int start_sum(float*, std::size_t) override { return 0; }
  void wait(int) override {}
  void sum_now(double*, std::size_t) override {}
  void min_max(std::uint64_t value, std::uint64_t& min, std::uint64_t& max) override { min = max = value; }
};

}  // namespace pld::dist
