// RAII owners of device memory and events, and the typed copies between host and device. No
// globals, no caching allocator: the caller decides when memory is taken and given back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "pld/cuda/error.hpp"

namespace pld::cuda {

// An owned, uninitialised block of device memory (cudaMalloc: 256-byte aligned). Move-only.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) { resize(bytes); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      reset();
      ptr_ = std::exchange(o.ptr_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { reset(); }

  // Frees and allocates anew when the size changes; the contents are not kept.
  void resize(std::size_t bytes) {
    if (bytes == bytes_) return;
    reset();
    if (bytes == 0) return;
    check(cudaMalloc(&ptr_, bytes), "cudaMalloc");
    bytes_ = bytes;
  }
  void reset() noexcept {
    if (ptr_) cudaFree(ptr_);  // a failure here cannot be reported from a destructor
    ptr_ = nullptr;
    bytes_ = 0;
  }

  void* data() const { return ptr_; }
  template <class T>
  T* as() const { return static_cast<T*>(ptr_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// n elements of T on the device.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(std::size_t n) : buf_(n * sizeof(T)), n_(n) {}
  T* data() const { return buf_.as<T>(); }
  std::size_t size() const { return n_; }

 private:
  DeviceBuffer buf_;
  std::size_t n_ = 0;
};

template <class T>
void copy_to_device(T* dst, const T* src, std::size_t n, cudaStream_t stream) {
  check(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, stream), "cudaMemcpyAsync (host to device)");
}

template <class T>
void copy_to_host(T* dst, const T* src, std::size_t n, cudaStream_t stream) {
  check(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync (device to host)");
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

template <class T>
DeviceArray<T> to_device(const std::vector<T>& v, cudaStream_t stream = nullptr) {
  DeviceArray<T> d(v.size());
  copy_to_device(d.data(), v.data(), v.size(), stream);
  check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  return d;
}

template <class T>
std::vector<T> to_host(const T* src, std::size_t n, cudaStream_t stream = nullptr) {
  std::vector<T> v(n);
  copy_to_host(v.data(), src, n, stream);
  return v;
}

// Page-locked host memory that a host-to-device cudaMemcpyAsync reads from: the copy is then
// truly asynchronous (from pageable memory the driver stages it and may block the host until the
// stream reaches it). Before reuse, wait_until_copied() waits for the last copy that read it, so
// a later step never overwrites data a queued copy has yet to read. Grows, never shrinks.
template <class T>
class PinnedStaging {
 public:
  PinnedStaging() = default;
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;
  ~PinnedStaging() {
    if (event_) cudaEventDestroy(event_);
    if (ptr_) cudaFreeHost(ptr_);
  }
  // n elements to write into, after any copy still reading the old contents has finished.
  T* reserve(std::size_t n) {
    if (pending_) check(cudaEventSynchronize(event_), "cudaEventSynchronize");
    pending_ = false;
    if (n > capacity_) {
      if (ptr_) check(cudaFreeHost(ptr_), "cudaFreeHost");
      ptr_ = nullptr;
      capacity_ = 0;
      check(cudaMallocHost(reinterpret_cast<void**>(&ptr_), n * sizeof(T)), "cudaMallocHost");
      capacity_ = n;
    }
    return ptr_;
  }
  // Marks the point on `stream` after which the contents are no longer read.
  void copied(cudaStream_t stream) {
    if (!event_) check(cudaEventCreateWithFlags(&event_, cudaEventDisableTiming), "cudaEventCreate");
    check(cudaEventRecord(event_, stream), "cudaEventRecord");
    pending_ = true;
  }

 private:
  T* ptr_ = nullptr;
  std::size_t capacity_ = 0;
  cudaEvent_t event_ = nullptr;
  bool pending_ = false;
};

// A CUDA event, for timing on a stream (benchmarks) and ordering between streams.
class Event {
 public:
  Event() { check(cudaEventCreate(&event_), "cudaEventCreate"); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() { cudaEventDestroy(event_); }
  void record(cudaStream_t stream) { check(cudaEventRecord(event_, stream), "cudaEventRecord"); }
  void synchronize() { check(cudaEventSynchronize(event_), "cudaEventSynchronize"); }
  cudaEvent_t get() const { return event_; }
  // Milliseconds from `start` to this event (both recorded and complete).
  float elapsed_ms_since(const Event& start) const {
    float ms = 0.0f;
    check(cudaEventElapsedTime(&ms, start.event_, event_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  cudaEvent_t event_ = nullptr;
};

// A stream created by pld (tests, benchmarks); the layer itself only ever runs on the caller's.
class Stream {
 public:
  Stream() { check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate"); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream() { cudaStreamDestroy(stream_); }
  cudaStream_t get() const { return stream_; }
  void synchronize() const { check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

 private:
  cudaStream_t stream_ = nullptr;
};

}  // namespace pld::cuda
