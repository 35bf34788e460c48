// Helpers for the executor's GPU tests: device arrays, random inputs, bf16
// conversion, poisoning and the relative-error measure of METHOD.md
// (||out - ref|| / ||ref|| against a float64 CPU reference; NaN never passes).
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "executor/dtype.h"

namespace p3d::testing {

// n token ids uniform in [0, vocab), reproducible from `seed`.
inline std::vector<int32_t> RandomTokens(size_t n, int32_t vocab, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int32_t> d(0, vocab - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(gen);
  return t;
}


// Tolerances on ||out - ref|| / ||ref||: fp32 outputs of fp32 arithmetic, and
// bf16 outputs (rounding alone gives ~2e-3; METHOD.md: 1e-3 .. 1e-2).
inline constexpr double kF32Tol = 1e-5;
inline constexpr double kBf16Tol = 1e-2;

template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n) {
    EXPECT_EQ(cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(host.size()) { Upload(host); }
  ~DeviceArray() { cudaFree(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  T* get() const { return ptr_; }
  size_t size() const { return n_; }
  void Upload(const std::vector<T>& host) {
    ASSERT_EQ(host.size(), n_);
    ASSERT_EQ(cudaMemcpy(ptr_, host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<T> Download() const {
    std::vector<T> host(n_);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  // All bytes 0xFF: NaN in bf16 and fp32, -1 in int32. An output element the
  // kernel fails to write stays NaN and fails RelError.
  void Poison() { ASSERT_EQ(cudaMemset(ptr_, 0xFF, n_ * sizeof(T)), cudaSuccess); }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// Uniform values in [-scale, scale], never exactly zero.
inline std::vector<float> RandomFloats(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (float& x : v) {
    do x = dist(gen);
    while (x == 0.0f);
  }
  return v;
}

// Values rounded to bf16 (so the CPU reference sees exactly what the GPU reads).
inline std::vector<float> RandomBf16Values(size_t n, uint32_t seed, float scale = 1.0f) {
  std::vector<float> v = RandomFloats(n, seed, scale);
  for (float& x : v) x = RoundToBf16(x);
  return v;
}

inline std::vector<bf16> ToBf16(const std::vector<float>& v) {
  std::vector<bf16> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b = FloatToBf16Bits(v[i]);
    std::memcpy(static_cast<void*>(&out[i]), &b, 2);
  }
  return out;
}

inline std::vector<float> FromBf16(const std::vector<bf16>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, static_cast<const void*>(&v[i]), 2);
    out[i] = Bf16BitsToFloat(b);
  }
  return out;
}

// ||out - ref||_2 / ||ref||_2; +inf when any output is NaN/inf or ref is zero.
template <typename T>
double RelError(const std::vector<T>& out, const std::vector<double>& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size() && i < ref.size(); ++i) {
    const double o = static_cast<double>(out[i]);
    if (!std::isfinite(o)) return std::numeric_limits<double>::infinity();
    num += (o - ref[i]) * (o - ref[i]);
    den += ref[i] * ref[i];
  }
  if (den == 0) return std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

inline std::vector<double> ToDouble(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace p3d::testing
