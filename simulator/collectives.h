// The collectives p3d times, models and calibrates, described once: name,
// ring steps, bus factor, element counts and the values a correctness check
// expects. The communication model (comm_model.h), the profile's collective
// fit (profile.cc), p3d-calibrate's probe and p3d-comm-bench all read this
// table; only the NCCL call itself lives in the executor (executor/comm/
// collective_call.h). Definitions of algbw and busbw: docs/comm.md.
//
// For n ranks and a `bytes`-sized full buffer (what each rank holds before an
// all-reduce / after an all-gather / before a reduce-scatter):
//   op              ring steps   bus factor (busbw = algbw * factor)
//   all-reduce      2(n-1)       2(n-1)/n
//   reduce-scatter   (n-1)        (n-1)/n
//   all-gather       (n-1)        (n-1)/n
//   send-recv          1            1        (each rank sends to rank+1)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace p3d {

enum class Collective { kAllReduce, kReduceScatter, kAllGather, kSendRecv };
inline constexpr Collective kCollectives[] = {Collective::kAllReduce, Collective::kReduceScatter,
                                              Collective::kAllGather, Collective::kSendRecv};

const char* CollectiveName(Collective op);  // "all-reduce", "reduce-scatter", "all-gather", "send-recv"
// Inverse of CollectiveName; false when `name` is none of them.
bool ParseCollective(std::string_view name, Collective* out);
// "all-reduce, reduce-scatter, all-gather, send-recv" (for messages).
std::string CollectiveNames();

double RingSteps(Collective op, int n);
double BusFactor(Collective op, int n);

// Elements (of 4 bytes) of the full buffer, what each rank sends and receives;
// the full count is a multiple of n for every op.
struct CollectiveCounts {
  size_t full = 0, send = 0, recv = 0;
};
CollectiveCounts CountsOf(Collective op, double bytes, int n);

// The checked test pattern: rank r sends CollectiveInput(r, i) at element i
// (small integers, so every sum is exact in float32) ...
float CollectiveInput(int rank, size_t i);
// ... and rank `rank` of n must then hold CollectiveExpected(...) at element i.
float CollectiveExpected(Collective op, const CollectiveCounts& k, int rank, int n, size_t i);

}  // namespace p3d
