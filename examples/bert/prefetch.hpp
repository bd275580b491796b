// The training batches of an MlmStream made ahead on a thread of their own, so the host's masking
// of the next batch overlaps the current step (on a GPU, the device's work; the loop's host
// thread is then waiting for the step's results anyway). The batches come out in the stream's
// order and each is a function of its stream position only (mlm_data.hpp), so a run's numbers do
// not change with prefetching; position() is the position after the batches taken, which is what
// a checkpoint records.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <utility>

#include "mlm_data.hpp"
#include "pld/core/error.hpp"

namespace bert {

class BatchPrefetcher {
 public:
  // Batches of `batch` sequences from `stream`'s current position on, at most `depth` made ahead.
  // The prefetcher works on its own copy of the stream (the sequences must outlive it).
  BatchPrefetcher(const MlmStream& stream, int batch, int depth = 2)
      : stream_(stream), batch_(batch), depth_(depth), position_(stream.position()) {
    if (batch < 1 || depth < 1) pld::detail::throw_error("BatchPrefetcher: batch and depth must be >= 1");
    worker_ = std::thread([this] { produce(); });
  }
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;
  ~BatchPrefetcher() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  // The next batch (waiting for it if it is not made yet). An error the stream threw is
  // rethrown here, in the loop's thread.
  void next(MlmBatch& out) {
    std::unique_lock<std::mutex> l(m_);
    cv_.wait(l, [&] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    out = std::move(ready_.front());
    ready_.pop_front();
    position_ += static_cast<std::uint64_t>(batch_);
    cv_.notify_all();
  }
  // The stream position after the batches next() returned.
  std::uint64_t position() const {
    std::lock_guard<std::mutex> l(m_);
    return position_;
  }

 private:
  void produce() {
    try {
      for (;;) {
        {
          std::unique_lock<std::mutex> l(m_);
          cv_.wait(l, [&] { return stop_ || static_cast<int>(ready_.size()) < depth_; });
          if (stop_) return;
        }
        MlmBatch b;
        stream_.next(batch_, b);  // outside the lock: this is the work that overlaps the step
        std::lock_guard<std::mutex> l(m_);
        ready_.push_back(std::move(b));
        cv_.notify_all();
      }
    } catch (...) {
      std::lock_guard<std::mutex> l(m_);
      error_ = std::current_exception();
      cv_.notify_all();
    }
  }

  MlmStream stream_;
  const int batch_, depth_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::deque<MlmBatch> ready_;
  std::uint64_t position_;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;  // last: started when everything above is ready
};

}  // namespace bert
