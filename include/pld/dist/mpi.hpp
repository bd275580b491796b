// Communicator over MPI (target pld::mpi, where MPI is found): non-blocking MPI_Iallreduce for
// gradient buckets, completed by wait() with a deadline, so a rank that died or hangs becomes one
// clear pld::Error on the others instead of a hang. Errors from MPI are returned, not fatal
// (MPI_ERRORS_RETURN on the communicator), and become pld::Error naming the call.
//
// The caller initialises and finalises MPI (MPI_Init_thread ... MPI_Finalize, or MpiSession).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include <mpi.h>

#include "pld/core/error.hpp"
#include "pld/dist/communicator.hpp"

namespace pld::dist {

namespace detail {
inline void mpi_check(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  pld::detail::throw_error(call, " failed: ", std::string(text, static_cast<std::size_t>(len)));
}
}  // namespace detail

// MPI_Init / MPI_Finalize for a program's lifetime (a no-op pair when MPI is already initialised).
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv) {
    int done = 0;
    MPI_Initialized(&done);
    if (!done) {
      int provided = 0;
      detail::mpi_check(MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
      owner_ = true;
    }
  }
  ~MpiSession() {
    if (owner_) MPI_Finalize();
  }
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

 private:
  bool owner_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  // Over `comm` (duplicated, so pld's traffic never matches the caller's); `timeout` bounds
  // every wait.
  explicit MpiCommunicator(MPI_Comm comm = MPI_COMM_WORLD, std::chrono::seconds timeout = std::chrono::seconds(600)) : timeout_(timeout) {
    detail::mpi_check(MPI_Comm_dup(comm, &comm_), "MPI_Comm_dup");
    detail::mpi_check(MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) MPI_Comm_free(&comm_);
  }
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* name() const override { return "MPI"; }
  MPI_Comm comm() const { return comm_; }

  int start_sum(float* data, std::size_t n) override {
    if (n > static_cast<std::size_t>(INT32_MAX)) pld::detail::throw_error("MpiCommunicator: a bucket of ", n, " floats exceeds MPI's int count");
    MPI_Request r = MPI_REQUEST_NULL;
    detail::mpi_check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_FLOAT, MPI_SUM, comm_, &r), "MPI_Iallreduce");
    requests_.push_back(r);
    return static_cast<int>(requests_.size()) - 1;
  }

  void wait(int handle) override {
    if (handle < 0 || static_cast<std::size_t>(handle) >= requests_.size()) pld::detail::throw_error("MpiCommunicator::wait: no request ", handle);
    MPI_Request& r = requests_[static_cast<std::size_t>(handle)];
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    int done = 0;
    while (true) {
      detail::mpi_check(MPI_Test(&r, &done, MPI_STATUS_IGNORE), "MPI_Test");
      if (done) break;
      if (std::chrono::steady_clock::now() > deadline)
        pld::detail::throw_error("rank ", rank_, ": a gradient all-reduce did not complete in ", timeout_.count(),
                                 " s; another rank has probably died or stopped");
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    bool all = true;  // every started sum waited for: the slots are recycled (handles restart at 0)
    for (MPI_Request q : requests_) all = all && q == MPI_REQUEST_NULL;
    if (all) requests_.clear();
  }

  void sum_now(double* data, std::size_t n) override {
    detail::mpi_check(MPI_Allreduce(MPI_IN_PLACE, data, static_cast<int>(n), MPI_DOUBLE, MPI_SUM, comm_), "MPI_Allreduce");
  }

  void min_max(std::uint64_t value, std::uint64_t& min, std::uint64_t& max) override {
    unsigned long long v[2] = {value, ~static_cast<unsigned long long>(value)}, r[2] = {0, 0};
    // One all-reduce: the max of v and of its complement give max and ~min.
    detail::mpi_check(MPI_Allreduce(v, r, 2, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm_), "MPI_Allreduce");
    max = r[0];
    min = ~r[1];
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  std::chrono::seconds timeout_;
  std::vector<MPI_Request> requests_;
};

}  // namespace pld::dist
