// Counter-based random numbers shared by host and device code: the value for
// (seed, stream, index) is a pure function, so initialisation and synthetic
// data are deterministic, independent of launch configuration, and can be
// recomputed on the CPU in tests.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#define P3D_HOST_DEVICE __host__ __device__
#else
#define P3D_HOST_DEVICE
#endif

namespace p3d {

// SplitMix64 finaliser (Steele, Lea, Flood 2014): a bijective 64-bit mix.
P3D_HOST_DEVICE inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// 64 random bits for element `index` of random stream `stream` under `seed`.
P3D_HOST_DEVICE inline uint64_t RandomBits(uint64_t seed, uint64_t stream, uint64_t index) {
  return SplitMix64(SplitMix64(seed ^ SplitMix64(stream + 0x632BE59BD9B4E019ull)) + index);
}

// Two uniforms in (0, 1) with 24 bits each, taken from one draw of RandomBits.
P3D_HOST_DEVICE inline void TwoUniforms(uint64_t bits, float* u1, float* u2) {
  *u1 = (static_cast<float>(bits >> 40) + 0.5f) * (1.0f / 16777216.0f);
  *u2 = (static_cast<float>((bits >> 8) & 0xFFFFFFull) + 0.5f) * (1.0f / 16777216.0f);
}

}  // namespace p3d
