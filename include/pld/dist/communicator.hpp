// What data parallelism needs from a transport, as one small interface: start a sum all-reduce of
// floats in place and wait for it, a blocking sum of a few doubles, and the min and max of one
// integer over all ranks. MpiCommunicator (pld/dist/mpi.hpp) and NcclCommunicator
// (pld/dist/nccl.hpp) implement it; LocalCommunicator is the one-process case.
#pragma once

#include <cstddef>
#include <cstdint>

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
