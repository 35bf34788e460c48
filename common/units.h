// Units: p3d computes in bytes and seconds. Human output says GiB (2^30 bytes)
// or GB (10^9 bytes) explicitly; JSON carries raw bytes and seconds.
#pragma once

namespace p3d {

inline constexpr double kKiB = 1024.0;
inline constexpr double kMiB = 1024.0 * 1024.0;
inline constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
inline constexpr double kGB = 1e9;
inline constexpr double kTFLOP = 1e12;

inline double ToGiB(double bytes) { return bytes / kGiB; }

}  // namespace p3d
