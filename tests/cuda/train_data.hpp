// Inputs of the GPU pretraining kernels' tests, shared by the SIMT-emulator test and the GPU test:
// float normals and their copy in a storage type (fp32, bf16, fp16).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "pld/cuda/storage.hpp"

namespace pld::test {

inline std::vector<float> float_normals(std::size_t n, std::uint64_t seed, float sd = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, sd);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

template <class T>
std::vector<T> in_storage(const std::vector<float>& v) {
  std::vector<T> out(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = pld::cuda::from_float<T>(v[i]);
  return out;
}

}  // namespace pld::test
