// Pipeline simulation: times a PipeSchedule (simulator/schedule.h) given the
// duration of every (rank, chunk) forward and backward and the time to move an
// activation (or its gradient) across each virtual-stage boundary.
//
// Model. Each pipeline rank executes its step list in order on one compute
// stream. A forward of (mb, virtual stage v) starts when the rank is free and
// the output of (mb, v-1) has arrived: arrival = end of that forward +
// p2p_s[v-1]. A backward of (mb, v) likewise waits for the gradient from
// (mb, v+1): end of that backward + p2p_s[v]. Sends are asynchronous (a
// separate stream, as in the executor): they occupy no compute time, so p2p
// shows up only as waiting on the receiver. Steps are evaluated as a max-plus
// recurrence; the order the simulator visits ranks in does not change times.
//
// Cost: O(steps + passes * PP) per run with no allocation once the
// simulator's buffers have grown to the largest schedule seen (reuse one
// PipelineSimulator per thread). Not thread-safe.
#pragma once

#include <vector>

#include "common/status.h"
#include "simulator/estimate.h"
#include "simulator/schedule.h"

namespace p3d {

struct PipelineCosts {
  int pp = 1;
  int vpp = 1;
  int64_t microbatches = 1;
  std::vector<double> forward_s;   // [rank * vpp + chunk], seconds per micro-batch
  std::vector<double> backward_s;  // [rank * vpp + chunk], incl. recompute
  // [virtual stage v], v in [0, pp*vpp - 1): activation v -> v+1 and its
  // gradient v+1 -> v, seconds per micro-batch. Empty means zero.
  std::vector<double> p2p_s;
};

struct PipelineResult {
  double makespan_s = 0;       // first step start (0) to last step end, any rank
  std::vector<double> busy_s;  // per rank: sum of its forward + backward durations
  std::vector<double> end_s;   // per rank: end of its last step
  // p2p seconds on the critical path (the chain of steps that ends last):
  // how much of the makespan is exposed pipeline communication.
  double critical_p2p_s = 0;
  std::vector<TimelineEvent> events;  // forward/backward/p2p intervals, when requested
  double idle_s(int rank) const { return makespan_s - busy_s[rank]; }
};

class PipelineSimulator {
 public:
  // Errors: costs sized inconsistently with (pp, vpp) or the schedule, a
  // negative duration, or a schedule that deadlocks (named).
  Status Run(const PipeSchedule& schedule, const PipelineCosts& costs, bool record_events,
             PipelineResult* result);

 private:
  // Per (virtual stage, micro-batch): end time of its forward / backward and
  // the p2p seconds on the critical chain ending there. < 0 = not yet run.
  std::vector<double> fwd_end_, bwd_end_, fwd_p2p_, bwd_p2p_;
  std::vector<size_t> pc_;
  std::vector<double> clock_, clock_p2p_;
};

// Convenience wrapper (allocates a simulator).
StatusOr<PipelineResult> SimulatePipeline(const PipeSchedule& schedule, const PipelineCosts& costs,
                                          bool record_events = false);

}  // namespace p3d
