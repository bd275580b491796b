// A small SIMT emulator so pld's CUDA kernels run, as written, on a machine without a GPU: the
// test translation unit defines PLD_CUDA_EMULATION, includes this header first, then the .cuh
// files, and compiles them with the host compiler. A launch runs every block of the grid, one
// warp at a time, each warp's 32 lanes as 32 host threads; __shfl_xor_sync is an exchange between
// those threads with a barrier on each side. Enough for pld's kernels, which use warp shuffles
// but no shared memory and no __syncthreads (the emulator has neither). Slow (a barrier is a
// thread hand-off), so tests keep shapes small. It checks indexing, masking, reductions and
// rounding of the real kernel code; not timing, memory coalescing or races between warps.
#pragma once

#if !defined(PLD_CUDA_EMULATION)
#error "define PLD_CUDA_EMULATION for the whole translation unit before including simt_emulator.hpp"
#endif

#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <cuda_runtime.h>  // dim3, uint3 (host declarations only under a host compiler)

namespace pld::cuda::emulation {

inline thread_local uint3 tl_thread_idx{0, 0, 0};
inline thread_local uint3 tl_block_idx{0, 0, 0};
inline thread_local dim3 tl_block_dim{1, 1, 1};
inline thread_local dim3 tl_grid_dim{1, 1, 1};
inline thread_local int tl_lane = 0;

// 32 persistent threads, one per lane; run(job) runs job(lane) on all of them and waits.
class WarpPool {
 public:
  WarpPool() {
    for (int lane = 0; lane < 32; ++lane) workers_.emplace_back([this, lane] { work(lane); });
  }
  ~WarpPool() {
    {
      std::lock_guard<std::mutex> l(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }
  void run(const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> l(m_);
    job_ = &job;
    remaining_ = 32;
    ++generation_;
    cv_.notify_all();
    done_.wait(l, [this] { return remaining_ == 0; });
    job_ = nullptr;
  }
  // __syncwarp: every lane arrives before any goes on.
  void sync() { barrier(); }
  // The lanes' exchange: every lane publishes v, all wait, each reads its partner, all wait.
  float shuffle_xor(float v, int lane_mask) {
    slots_[tl_lane] = v;
    barrier();
    const float r = slots_[tl_lane ^ lane_mask];
    barrier();
    return r;
  }

 private:
  void work(int lane) {
    unsigned seen = 0;
    for (;;) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> l(m_);
        cv_.wait(l, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      tl_lane = lane;
      (*job)(lane);
      std::lock_guard<std::mutex> l(m_);
      if (--remaining_ == 0) done_.notify_one();
    }
  }
  void barrier() {
    std::unique_lock<std::mutex> l(bm_);
    const unsigned gen = bgen_;
    if (++arrived_ == 32) {
      arrived_ = 0;
      ++bgen_;
      bcv_.notify_all();
    } else {
      bcv_.wait(l, [&] { return bgen_ != gen; });
    }
  }

  std::vector<std::thread> workers_;
  std::mutex m_;
  std::condition_variable cv_, done_;
  const std::function<void(int)>* job_ = nullptr;
  unsigned generation_ = 0;
  int remaining_ = 0;
  bool stop_ = false;
  float slots_[32] = {};
  std::mutex bm_;
  std::condition_variable bcv_;
  int arrived_ = 0;
  unsigned bgen_ = 0;
};

inline WarpPool& pool() {
  static WarpPool p;
  return p;
}

inline dim3 as_dim3(dim3 d) { return d; }
inline dim3 as_dim3(unsigned x) { return dim3(x, 1, 1); }
inline dim3 as_dim3(int x) { return dim3(static_cast<unsigned>(x), 1, 1); }

// launch(grid, block, kernel)(args...): every block, warp by warp, lanes as threads.
template <class G, class B, class... P>
auto launch(G grid_arg, B block_arg, void (*kernel)(P...)) {
  const dim3 grid = as_dim3(grid_arg), block = as_dim3(block_arg);
  return [=](auto... args) {
    for (unsigned bz = 0; bz < grid.z; ++bz)
      for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx)
          for (unsigned w = 0; w < (block.x * block.y * block.z + 31) / 32; ++w) {
            const std::function<void(int)> job = [&](int lane) {
              const unsigned t = w * 32 + static_cast<unsigned>(lane);
              tl_thread_idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
              tl_block_idx = uint3{bx, by, bz};
              tl_block_dim = block;
              tl_grid_dim = grid;
              if (t < block.x * block.y * block.z) kernel(static_cast<P>(args)...);
            };
            pool().run(job);
          }
  };
}

}  // namespace pld::cuda::emulation

#define threadIdx (::pld::cuda::emulation::tl_thread_idx)
#define blockIdx (::pld::cuda::emulation::tl_block_idx)
#define blockDim (::pld::cuda::emulation::tl_block_dim)
#define gridDim (::pld::cuda::emulation::tl_grid_dim)

inline float __shfl_xor_sync(unsigned, float v, int lane_mask) { return ::pld::cuda::emulation::pool().shuffle_xor(v, lane_mask); }
inline void __syncwarp(unsigned = 0xffffffffu) { ::pld::cuda::emulation::pool().sync(); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline int min(int a, int b) { return a < b ? a : b; }
