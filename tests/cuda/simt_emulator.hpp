// A small SIMT emulator so pld's CUDA kernels run, as written, on a machine without a GPU: the
// test translation unit defines PLD_CUDA_EMULATION, includes this header first, then the .cuh
// files, and compiles them with the host compiler. A launch runs every block of the grid, one
// warp at a time, each warp's 32 lanes as 32 fibers of the launching thread (WarpPool);
// __shfl_xor_sync is an exchange between the lanes with a barrier on each side. Enough for pld's kernels, which use warp shuffles
// but no shared memory and no __syncthreads (the emulator has neither). Slow (a barrier is 32
// context switches), so tests keep shapes small. It checks indexing, masking, reductions and
// rounding of the real kernel code; not timing, memory coalescing or races between warps.
#pragma once

#if !defined(PLD_CUDA_EMULATION)
#error "define PLD_CUDA_EMULATION for the whole translation unit before including simt_emulator.hpp"
#endif

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#if defined(__x86_64__) && defined(__linux__)
#define PLD_EMU_OWN_SWITCH 1
#else
#include <ucontext.h>
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

#include <cuda_runtime.h>  // dim3, uint3 (host declarations only under a host compiler)

#if defined(PLD_EMU_OWN_SWITCH)
// pld_emu_switch(from, to): pushes the callee-saved registers on this stack, stores the stack
// pointer in *from and continues on the stack `to` (popping what it pushed there). No system
// call: glibc's swapcontext also saves and restores the signal mask (rt_sigprocmask), and in
// these KVM guests that syscall was most of the emulator's time (the fp16 loop test: 96 s,
// 47 of them in the kernel). Weak, so every test translation unit may define it.
extern "C" void pld_emu_switch(void** from, void* to);
__asm__(
    ".text\n"
    ".weak pld_emu_switch\n"
    ".type pld_emu_switch, @function\n"
    "pld_emu_switch:\n"
    "  pushq %rbp\n"
    "  pushq %rbx\n"
    "  pushq %r12\n"
    "  pushq %r13\n"
    "  pushq %r14\n"
    "  pushq %r15\n"
    "  movq %rsp, (%rdi)\n"
    "  movq %rsi, %rsp\n"
    "  popq %r15\n"
    "  popq %r14\n"
    "  popq %r13\n"
    "  popq %r12\n"
    "  popq %rbx\n"
    "  popq %rbp\n"
    "  ret\n"
    ".size pld_emu_switch, .-pld_emu_switch\n");
#endif

namespace pld::cuda::emulation {

inline thread_local uint3 tl_thread_idx{0, 0, 0};
inline thread_local uint3 tl_block_idx{0, 0, 0};
inline thread_local dim3 tl_block_dim{1, 1, 1};
inline thread_local dim3 tl_grid_dim{1, 1, 1};
inline thread_local int tl_lane = 0;

// The 32 lanes of a warp as fibers of the calling thread (pld_emu_switch on x86-64 Linux,
// ucontext elsewhere): run() enters each lane in
// turn; a lane runs until it reaches a warp barrier (a shuffle, __syncwarp) or returns, then
// control comes back here. A round in which every live lane was entered once therefore brings
// them all to the same barrier: the barrier's semantics, with no thread hand-off. (Session 9: the
// earlier 32 host threads with mutex barriers spent most of their time in the OS scheduler; with
// fibers the 40-step fp16 loop test took 26 s instead of 157 s on 2 busy cores.) Lanes that
// return early simply leave the rounds, as exited lanes leave a warp.
class WarpPool {
 public:
  static constexpr std::size_t kStack = 256 * 1024;  // per lane: pld's kernels keep small locals

  WarpPool() : stacks_(32 * kStack) {}
  WarpPool(const WarpPool&) = delete;
  WarpPool& operator=(const WarpPool&) = delete;

  // job(lane) on all 32 lanes; enter(lane) runs each time the lane is entered or resumed (it sets
  // the lane's thread-local indices, which the fibers share with this thread).
  void run(const std::function<void(int)>& job, const std::function<void(int)>& enter) {
    job_ = &job;
    for (int l = 0; l < 32; ++l) make_lane(l);
    for (int live = 32; live > 0;) {
      for (int l = 0; l < 32; ++l) {
        if (done_[l]) continue;
        current_ = l;
        tl_lane = l;
        enter(l);
        switch_to_lane(l);
        if (done_[l]) --live;
      }
    }
    job_ = nullptr;
  }
  // __syncwarp: every lane arrives before any goes on.
  void sync() { yield(); }
  // The lanes' exchange: every lane publishes v, all arrive, each reads its partner, all arrive.
  float shuffle_xor(float v, int lane_mask) {
    const int l = current_;
    slots_[l] = v;
    yield();
    const float r = slots_[l ^ lane_mask];
    yield();
    return r;
  }

 private:
  static void entry();
  char* stack_of(int l) { return stacks_.data() + static_cast<std::size_t>(l) * kStack; }
#if defined(PLD_EMU_OWN_SWITCH)
  // A fresh lane's stack as pld_emu_switch leaves one: six zero registers, then the address it
  // returns to (lane_main), above it a zero return address for lane_main itself, which therefore
  // starts with the stack alignment of a called function (rsp + 8 a multiple of 16).
  void make_lane(int l) {
    // The previous run's frames left their redzones poisoned on this stack; a fresh lane starts
    // clean (ASan's swapcontext interceptor does the same for ucontext).
    unpoison(stack_of(l), kStack);
    auto top = reinterpret_cast<std::uintptr_t>(stack_of(l) + kStack) & ~std::uintptr_t(15);
    auto* sp = reinterpret_cast<void**>(top);
    *--sp = nullptr;                                      // lane_main's return address: never used
    *--sp = reinterpret_cast<void*>(&WarpPool::lane_main);  // where the first switch "returns"
    for (int r = 0; r < 6; ++r) *--sp = nullptr;          // rbp, rbx, r12-r15
    lane_sp_[l] = sp;
    done_[l] = false;
  }
  [[noreturn]] static void lane_main();
  void jump_to_lane(int l) { pld_emu_switch(&home_sp_, lane_sp_[l]); }
  void jump_home(int l) { pld_emu_switch(&lane_sp_[l], home_sp_); }
#else
  // Not inlined: getcontext returns twice, which would make run()'s locals suspect (-Wclobbered).
  __attribute__((noinline)) void make_lane(int l) {
    getcontext(&lane_[l]);
    lane_[l].uc_stack.ss_sp = stack_of(l);
    lane_[l].uc_stack.ss_size = kStack;
    lane_[l].uc_link = &home_;
    makecontext(&lane_[l], &WarpPool::entry, 0);
    done_[l] = false;
  }
  void jump_to_lane(int l) { swapcontext(&home_, &lane_[l]); }
  void jump_home(int l) { swapcontext(&lane_[l], &home_); }
#endif
  // The switches with ASan's fiber annotations around them (no-ops without ASan).
  void switch_to_lane(int l) {
    annotate_start(&fake_stack_, stack_of(l), kStack);
    jump_to_lane(l);
    annotate_finish(fake_stack_, nullptr, nullptr);
  }
  void yield() {  // on a lane: back to run()
    const int l = current_;
    void* fake = nullptr;
    annotate_start(&fake, home_bottom_, home_size_);
    jump_home(l);
    annotate_finish(fake, nullptr, nullptr);
  }
#if defined(__SANITIZE_ADDRESS__)
  static void unpoison(const void* p, std::size_t n) { __asan_unpoison_memory_region(p, n); }
  static void annotate_start(void** fake, const void* bottom, std::size_t size) { __sanitizer_start_switch_fiber(fake, bottom, size); }
  static void annotate_finish(void* fake, const void** bottom, std::size_t* size) { __sanitizer_finish_switch_fiber(fake, bottom, size); }
#else
  static void unpoison(const void*, std::size_t) {}
  static void annotate_start(void**, const void*, std::size_t) {}
  static void annotate_finish(void*, const void**, std::size_t*) {}
#endif

  std::vector<char> stacks_;
#if defined(PLD_EMU_OWN_SWITCH)
  void* home_sp_ = nullptr;
  void* lane_sp_[32] = {};
#else
  ucontext_t home_{}, lane_[32]{};
#endif
  bool done_[32] = {};
  int current_ = 0;
  const std::function<void(int)>* job_ = nullptr;
  float slots_[32] = {};
  void* fake_stack_ = nullptr;
  const void* home_bottom_ = nullptr;  // the calling thread's stack, as ASan learns it on a lane's first entry
  std::size_t home_size_ = 0;
};

// One pool per host thread (lanes are fibers of the thread that launches).
inline WarpPool& pool() {
  static thread_local WarpPool p;
  return p;
}

inline void WarpPool::entry() {
  WarpPool& p = pool();
  p.annotate_finish(nullptr, &p.home_bottom_, &p.home_size_);
  const int l = p.current_;
  (*p.job_)(l);
  p.done_[l] = true;
  // Returning ends the fiber (lane_main's last switch, or uc_link: back to run()); its stack is
  // not used again this run.
  p.annotate_start(nullptr, p.home_bottom_, p.home_size_);
}

#if defined(PLD_EMU_OWN_SWITCH)
inline void WarpPool::lane_main() {
  entry();
  void* unused = nullptr;
  pld_emu_switch(&unused, pool().home_sp_);  // a finished lane is never resumed
  __builtin_unreachable();
}
#endif

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
            const unsigned threads = block.x * block.y * block.z;
            const std::function<void(int)> enter = [&](int lane) {
              const unsigned t = w * 32 + static_cast<unsigned>(lane);
              tl_thread_idx = uint3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
              tl_block_idx = uint3{bx, by, bz};
              tl_block_dim = block;
              tl_grid_dim = grid;
            };
            const std::function<void(int)> job = [&](int lane) {
              if (w * 32 + static_cast<unsigned>(lane) < threads) kernel(static_cast<P>(args)...);
            };
            pool().run(job, enter);
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
