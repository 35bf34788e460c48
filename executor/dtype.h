// Element types of the executor and exact host-side bf16 conversions.
//
// bf16 is CUDA's __nv_bfloat16 (1 sign, 8 exponent, 7 mantissa bits). The host
// conversions below round to nearest even (as __float2bfloat16 does on the
// device), so a float rounded on the host and on the device gives the same bits.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

namespace p3d {

using bf16 = __nv_bfloat16;

enum class DType { kBf16, kF32 };
inline int DTypeBytes(DType t) { return t == DType::kBf16 ? 2 : 4; }

inline uint16_t FloatToBf16Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0) return 0x7fc0;  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest, ties to even
  return static_cast<uint16_t>(u >> 16);
}

inline float Bf16BitsToFloat(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Rounds a float to the nearest bf16 value (returned as float).
inline float RoundToBf16(float f) { return Bf16BitsToFloat(FloatToBf16Bits(f)); }

}  // namespace p3d
