// The memory model's count of micro-batches in flight (memory_model.h
// InFlightMicroBatches) against the schedules themselves (schedule.h, the
// per-rank step lists the executor dispatches): the peak number of
// (micro-batch, chunk) pairs forwarded and not yet backwarded on each rank,
// divided by VPP, for 1F1B and interleaved 1F1B over a grid of PP, VPP, m.
#include <gtest/gtest.h>

#include <algorithm>

#include "simulator/memory_model.h"
#include "simulator/schedule.h"

namespace p3d {
namespace {

double PeakPairs(const std::vector<PipeStep>& steps) {
  int live = 0, peak = 0;
  for (const PipeStep& s : steps) {
    if (s.kind == StepKind::kForward) peak = std::max(peak, ++live);
    if (s.kind == StepKind::kBackward) --live;
  }
  return peak;
}

TEST(InFlightMicroBatches, MatchesThePeakOfEveryRanksStepList) {
  for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kInterleaved1F1B})
    for (int pp : {2, 4, 8})
      for (int vpp : {1, 2, 3})
        for (int64_t m : {1, 2, 4, 8, 16}) {
          if ((kind == ScheduleKind::kInterleaved1F1B) != (vpp > 1)) continue;
          auto sched = BuildSchedule(kind, pp, vpp, m);
          if (!sched.ok()) continue;  // e.g. interleaved needs m % PP == 0
          for (int r = 0; r < pp; ++r)
            EXPECT_DOUBLE_EQ(InFlightMicroBatches(kind, pp, vpp, m, r),
                             PeakPairs((*sched)[r]) / vpp)
                << "pp " << pp << " vpp " << vpp << " m " << m << " rank " << r;
        }
}

}  // namespace
}  // namespace p3d
