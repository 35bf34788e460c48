#include "simulator/pipeline_sim.h"

#include <fmt/format.h>

#include <algorithm>

namespace p3d {

namespace {

Status CheckCosts(const PipeSchedule& schedule, const PipelineCosts& c) {
  if (c.pp < 1 || c.vpp < 1 || c.microbatches < 1)
    return Status::InvalidArgument(
        fmt::format("pipeline_sim: pp, vpp and microbatches must be >= 1, got pp={} vpp={} m={}",
                    c.pp, c.vpp, c.microbatches));
  if (static_cast<int>(schedule.size()) != c.pp)
    return Status::InvalidArgument(fmt::format(
        "pipeline_sim: schedule has {} ranks but costs.pp is {}", schedule.size(), c.pp));
  const size_t chunks = static_cast<size_t>(c.pp) * c.vpp;
  if (c.forward_s.size() != chunks || c.backward_s.size() != chunks)
    return Status::InvalidArgument(
        fmt::format("pipeline_sim: forward_s/backward_s need pp*vpp = {} entries, got {}/{}",
                    chunks, c.forward_s.size(), c.backward_s.size()));
  if (!c.p2p_s.empty() && c.p2p_s.size() + 1 != chunks)
    return Status::InvalidArgument(
        fmt::format("pipeline_sim: p2p_s needs pp*vpp-1 = {} entries (or none), got {}", chunks - 1,
                    c.p2p_s.size()));
  auto negative = [](const std::vector<double>& v) {
    return std::any_of(v.begin(), v.end(), [](double x) { return !(x >= 0); });
  };
  if (negative(c.forward_s) || negative(c.backward_s) || negative(c.p2p_s))
    return Status::InvalidArgument("pipeline_sim: durations must be finite and >= 0");
  return Status::Ok();
}

}  // namespace

Status PipelineSimulator::Run(const PipeSchedule& schedule, const PipelineCosts& c,
                              bool record_events, PipelineResult* out) {
  P3D_RETURN_IF_ERROR(CheckCosts(schedule, c));
  const int pp = c.pp, vpp = c.vpp;
  const int64_t m = c.microbatches;
  const size_t nodes = static_cast<size_t>(pp) * vpp * m;
  fwd_end_.assign(nodes, -1.0);
  bwd_end_.assign(nodes, -1.0);
  fwd_p2p_.assign(nodes, 0.0);
  bwd_p2p_.assign(nodes, 0.0);
  pc_.assign(pp, 0);
  clock_.assign(pp, 0.0);
  clock_p2p_.assign(pp, 0.0);
  out->busy_s.assign(pp, 0.0);
  out->end_s.assign(pp, 0.0);
  out->events.clear();
  const int stages = pp * vpp;
  auto p2p = [&](int v) { return c.p2p_s.empty() ? 0.0 : c.p2p_s[v]; };

  size_t remaining = 0;
  for (const auto& prog : schedule) remaining += prog.size();
  while (remaining > 0) {
    bool progressed = false;
    for (int r = 0; r < pp; ++r) {
      const auto& prog = schedule[r];
      size_t& pc = pc_[r];
      while (pc < prog.size()) {
        const PipeStep& st = prog[pc];
        if (st.microbatch < 0 || st.microbatch >= m || st.chunk < 0 || st.chunk >= vpp)
          return Status::InvalidArgument(fmt::format(
              "pipeline_sim: rank {} step {} names micro-batch {} chunk {} outside m={} vpp={}", r,
              pc, st.microbatch, st.chunk, m, vpp));
        const int v = st.chunk * pp + r;
        const size_t node = static_cast<size_t>(v) * m + st.microbatch;
        if (st.kind == StepKind::kRecvForward || st.kind == StepKind::kRecvBackward) {
          const bool fwd = st.kind == StepKind::kRecvForward;
          const int src = fwd ? v - 1 : v + 1;
          if (src < 0 || src >= stages)
            return Status::InvalidArgument(fmt::format(
                "pipeline_sim: rank {} receives for virtual stage {} which has no peer", r, v));
          const size_t src_node = static_cast<size_t>(src) * m + st.microbatch;
          const double src_end = fwd ? fwd_end_[src_node] : bwd_end_[src_node];
          if (src_end < 0) break;  // not produced yet: this rank waits
          const double link = p2p(fwd ? v - 1 : v);
          const double arrival = src_end + link;
          if (arrival > clock_[r]) {  // the message, not this rank, is on the critical chain
            if (record_events && link > 0)
              out->events.push_back(
                  {r, TimelineKind::kSendRecv, st.microbatch, st.chunk, src_end, arrival});
            clock_[r] = arrival;
            clock_p2p_[r] = (fwd ? fwd_p2p_[src_node] : bwd_p2p_[src_node]) + link;
          }
        } else if (st.kind == StepKind::kForward || st.kind == StepKind::kBackward) {
          const bool fwd = st.kind == StepKind::kForward;
          const double d = fwd ? c.forward_s[r * vpp + st.chunk] : c.backward_s[r * vpp + st.chunk];
          const double start = clock_[r];
          clock_[r] += d;
          out->busy_s[r] += d;
          (fwd ? fwd_end_ : bwd_end_)[node] = clock_[r];
          (fwd ? fwd_p2p_ : bwd_p2p_)[node] = clock_p2p_[r];
          if (record_events)
            out->events.push_back({r, fwd ? TimelineKind::kForward : TimelineKind::kBackward,
                                   st.microbatch, st.chunk, start, clock_[r]});
        }
        // Sends are asynchronous: nothing to time on the sender.
        ++pc;
        --remaining;
        progressed = true;
      }
    }
    if (!progressed)
      return Status::InvalidArgument(
          "pipeline_sim: schedule deadlocks (a receive waits for a step that never runs first)");
  }
  out->makespan_s = 0;
  out->critical_p2p_s = 0;
  for (int r = 0; r < pp; ++r) {
    out->end_s[r] = clock_[r];
    if (clock_[r] > out->makespan_s) {
      out->makespan_s = clock_[r];
      out->critical_p2p_s = clock_p2p_[r];
    }
  }
  return Status::Ok();
}

StatusOr<PipelineResult> SimulatePipeline(const PipeSchedule& schedule, const PipelineCosts& costs,
                                          bool record_events) {
  PipelineSimulator sim;
  PipelineResult result;
  P3D_RETURN_IF_ERROR(sim.Run(schedule, costs, record_events, &result));
  return result;
}

}  // namespace p3d
