#include "executor/host/pipeline_program.h"

#include <fmt/format.h>

#include <map>
#include <set>
#include <utility>

namespace p3d {
namespace {

bool IsComm(StepKind k) { return k != StepKind::kForward && k != StepKind::kBackward; }
bool IsSend(StepKind k) { return k == StepKind::kSendForward || k == StepKind::kSendBackward; }
// The compute step a send follows or a receive precedes.
StepKind ComputeOf(StepKind k) {
  return k == StepKind::kSendForward || k == StepKind::kRecvForward ? StepKind::kForward
                                                                    : StepKind::kBackward;
}
bool SamePair(const PipeStep& a, const PipeStep& b) {
  return a.microbatch == b.microbatch && a.chunk == b.chunk;
}

// One compute step with the receive it waits for and the send it produces.
struct Unit {
  PipeStep compute;
  std::vector<PipeStep> recvs, sends;
};

StatusOr<std::vector<Unit>> SplitUnits(const std::vector<PipeStep>& steps, int vpp) {
  std::vector<Unit> units;
  std::vector<PipeStep> recvs;
  for (size_t i = 0; i < steps.size(); ++i) {
    const PipeStep& s = steps[i];
    if (s.chunk < 0 || s.chunk >= vpp)
      return Status::InvalidArgument(
          fmt::format("pipeline program: step {} ({}) has chunk {} outside [0, {})", i,
                      StepKindName(s.kind), s.chunk, vpp));
    if (!IsComm(s.kind)) {
      for (const PipeStep& r : recvs)
        if (!SamePair(r, s) || ComputeOf(r.kind) != s.kind)
          return Status::InvalidArgument(fmt::format(
              "pipeline program: step {} ({} of micro-batch {} chunk {}) is preceded by {} of "
              "micro-batch {} chunk {}; a receive must come right before its compute step",
              i, StepKindName(s.kind), s.microbatch, s.chunk, StepKindName(r.kind), r.microbatch,
              r.chunk));
      units.push_back({s, std::move(recvs), {}});
      recvs.clear();
    } else if (!IsSend(s.kind)) {
      recvs.push_back(s);
    } else if (units.empty() || !recvs.empty() || !SamePair(units.back().compute, s) ||
               units.back().compute.kind != ComputeOf(s.kind)) {
      return Status::InvalidArgument(fmt::format(
          "pipeline program: step {} ({} of micro-batch {} chunk {}) does not directly follow "
          "the compute step it sends the result of",
          i, StepKindName(s.kind), s.microbatch, s.chunk));
    } else {
      units.back().sends.push_back(s);
    }
  }
  if (!recvs.empty())
    return Status::InvalidArgument(
        fmt::format("pipeline program: {} of micro-batch {} chunk {} ends the list (no compute "
                    "step after it)",
                    StepKindName(recvs[0].kind), recvs[0].microbatch, recvs[0].chunk));
  return units;
}

// Iterations and their comm groups (see the header). `pair_steady`: a forward
// directly followed by a backward is one iteration, if the list has a steady
// phase at all (a forward after a backward); any other compute step is one.
std::vector<PipeAction> GroupIterations(const std::vector<Unit>& units, bool pair_steady) {
  bool steady = false;
  for (size_t u = 1; u < units.size(); ++u)
    steady = steady || (units[u - 1].compute.kind == StepKind::kBackward &&
                        units[u].compute.kind == StepKind::kForward);
  std::vector<size_t> starts;  // first unit of each iteration, then units.size()
  for (size_t u = 0; u < units.size();) {
    starts.push_back(u);
    const bool pair = pair_steady && steady && units[u].compute.kind == StepKind::kForward &&
                      u + 1 < units.size() && units[u + 1].compute.kind == StepKind::kBackward;
    u += pair ? 2 : 1;
  }
  starts.push_back(units.size());
  std::vector<PipeAction> actions;
  auto add_comm = [&](size_t it, bool sends) {
    // sends of iteration `it` or receives of iteration `it`.
    if (it + 1 >= starts.size()) return;
    for (size_t u = starts[it]; u < starts[it + 1]; ++u)
      for (const PipeStep& s : sends ? units[u].sends : units[u].recvs) {
        if (actions.empty() || actions.back().kind != PipeAction::Kind::kComm)
          actions.push_back({PipeAction::Kind::kComm, -1, -1, -1, {}, {}});
        actions.back().comm.push_back(s);
      }
  };
  add_comm(0, false);
  for (size_t it = 0; it + 1 < starts.size(); ++it) {
    for (size_t u = starts[it]; u < starts[it + 1]; ++u) {
      PipeAction a;
      a.kind = units[u].compute.kind == StepKind::kForward ? PipeAction::Kind::kForward
                                                           : PipeAction::Kind::kBackward;
      a.microbatch = units[u].compute.microbatch;
      a.chunk = units[u].compute.chunk;
      actions.push_back(std::move(a));
    }
    add_comm(it, true);
    add_comm(it + 1, false);
  }
  return actions;
}

// One pool of chunk-sized activation slots shared by every chunk (all chunks
// of a rank have L / vpp layers): lowest free slot first, so the peak is the
// list's peak number of (micro-batch, chunk) pairs in flight.
class SlotPool {
 public:
  int Acquire(int chunk, int mb) {
    int s = 0;
    while (used_.count(s)) ++s;
    used_.insert(s);
    live_[{chunk, mb}] = s;
    peak_ = std::max(peak_, s + 1);
    return s;
  }
  int Find(int chunk, int mb) const {
    auto it = live_.find({chunk, mb});
    return it == live_.end() ? -1 : it->second;
  }
  void Release(int chunk, int mb) {
    auto it = live_.find({chunk, mb});
    used_.erase(it->second);
    live_.erase(it);
  }
  bool Empty() const { return live_.empty(); }
  int peak() const { return peak_; }

 private:
  std::map<std::pair<int, int>, int> live_;  // (chunk, mb) -> slot
  std::set<int> used_;
  int peak_ = 0;
};

}  // namespace

StatusOr<PipelineProgram> CompilePipelineProgram(const std::vector<PipeStep>& steps, int vpp) {
  if (vpp < 1) return Status::InvalidArgument(fmt::format("pipeline program: vpp={} < 1", vpp));
  P3D_ASSIGN_OR_RETURN(std::vector<Unit> units, SplitUnits(steps, vpp));
  PipelineProgram prog;
  prog.vpp = vpp;
  prog.actions = GroupIterations(units, /*pair_steady=*/vpp > 1);
  // Slots, in dispatch order. A receive of the forward input
  // takes its slot; the forward then finds it.
  SlotPool pool;
  std::set<std::pair<int, int>> forwarded;
  for (PipeAction& a : prog.actions) {
    const std::pair<int, int> pair{a.microbatch, a.chunk};
    switch (a.kind) {
      case PipeAction::Kind::kForward:
        if (!forwarded.insert(pair).second)
          return Status::InvalidArgument(fmt::format(
              "pipeline program: micro-batch {} chunk {} forwarded twice", a.microbatch, a.chunk));
        a.slot = pool.Find(a.chunk, a.microbatch);
        if (a.slot < 0) a.slot = pool.Acquire(a.chunk, a.microbatch);
        break;
      case PipeAction::Kind::kBackward:
        a.slot = pool.Find(a.chunk, a.microbatch);
        if (a.slot < 0 || !forwarded.count(pair))
          return Status::InvalidArgument(fmt::format(
              "pipeline program: backward of micro-batch {} chunk {} before its forward",
              a.microbatch, a.chunk));
        pool.Release(a.chunk, a.microbatch);
        break;
      case PipeAction::Kind::kComm:
        for (const PipeStep& s : a.comm) {
          int slot = pool.Find(s.chunk, s.microbatch);
          if (s.kind == StepKind::kRecvForward) {
            if (slot >= 0 || forwarded.count({s.microbatch, s.chunk}))
              return Status::InvalidArgument(
                  fmt::format("pipeline program: input of micro-batch {} chunk {} received twice",
                              s.microbatch, s.chunk));
            slot = pool.Acquire(s.chunk, s.microbatch);
          }
          if (slot < 0 && s.kind != StepKind::kSendBackward)
            return Status::InvalidArgument(fmt::format(
                "pipeline program: {} of micro-batch {} chunk {} has no live activation slot",
                StepKindName(s.kind), s.microbatch, s.chunk));
          a.comm_slot.push_back(slot);
        }
        break;
    }
  }
  if (!pool.Empty())
    return Status::InvalidArgument("pipeline program: a forward has no backward (slot left live)");
  prog.slots = std::max(1, pool.peak());
  return prog;
}

namespace {

struct Message {
  int mb = 0, model_chunk = 0;  // what the tensor belongs to (see below)
  bool forward = true;
  int action = 0;  // index of the comm action holding the op in its rank's program
};

}  // namespace

// A forward message carries the output of model chunk k (sender) = the input
// of k + 1 (receiver); a backward message the input gradient of k (sender) =
// the output gradient of k - 1 (receiver). Both are keyed by the sender's k.
Status CheckPipelinePrograms(const std::vector<PipelineProgram>& programs) {
  const int pp = static_cast<int>(programs.size());
  if (pp < 1) return Status::InvalidArgument("pipeline check: no programs");
  const int vpp = programs[0].vpp;
  const int last = pp * vpp - 1;
  // sends[a][b], recvs[b][a]: messages in program order.
  std::vector<std::vector<std::vector<Message>>> sends(pp, std::vector<std::vector<Message>>(pp)),
      recvs(pp, std::vector<std::vector<Message>>(pp));
  for (int r = 0; r < pp; ++r) {
    std::set<std::pair<int, int>> have_input, have_grad;  // (mb, chunk) received
    const auto& acts = programs[r].actions;
    for (size_t i = 0; i < acts.size(); ++i) {
      const PipeAction& a = acts[i];
      if (a.kind != PipeAction::Kind::kComm) {
        const int k = ModelChunk(pp, r, a.chunk);
        if (a.kind == PipeAction::Kind::kForward && k > 0 &&
            !have_input.count({a.microbatch, a.chunk}))
          return Status::Internal(fmt::format(
              "pipeline check: rank {} forwards micro-batch {} chunk {} before receiving its input",
              r, a.microbatch, a.chunk));
        if (a.kind == PipeAction::Kind::kBackward && k < last &&
            !have_grad.count({a.microbatch, a.chunk}))
          return Status::Internal(
              fmt::format("pipeline check: rank {} runs backward of micro-batch {} chunk {} "
                          "before receiving its output gradient",
                          r, a.microbatch, a.chunk));
        continue;
      }
      for (const PipeStep& s : a.comm) {
        if (s.peer < 0 || s.peer >= pp)
          return Status::Internal(fmt::format("pipeline check: rank {} step {} has peer {}", r,
                                              StepKindName(s.kind), s.peer));
        const int k = ModelChunk(pp, r, s.chunk);
        const bool fwd = s.kind == StepKind::kSendForward || s.kind == StepKind::kRecvForward;
        if (IsSend(s.kind)) {
          sends[r][s.peer].push_back({s.microbatch, k, fwd, static_cast<int>(i)});
        } else {
          // Key by the sender's model chunk.
          recvs[r][s.peer].push_back({s.microbatch, fwd ? k - 1 : k + 1, fwd, static_cast<int>(i)});
          (fwd ? have_input : have_grad).insert({s.microbatch, s.chunk});
        }
      }
    }
  }
  // FIFO matching per ordered pair (a -> b).
  for (int a = 0; a < pp; ++a)
    for (int b = 0; b < pp; ++b) {
      const auto& s = sends[a][b];
      const auto& v = recvs[b][a];
      if (s.size() != v.size())
        return Status::Internal(
            fmt::format("pipeline check: rank {} sends {} messages to rank {}, which receives {}",
                        a, s.size(), b, v.size()));
      for (size_t k = 0; k < s.size(); ++k)
        if (s[k].mb != v[k].mb || s[k].model_chunk != v[k].model_chunk ||
            s[k].forward != v[k].forward)
          return Status::Internal(fmt::format(
              "pipeline check: message {} from rank {} to rank {} carries {} of micro-batch {} "
              "model chunk {}, but the receiver expects {} of micro-batch {} model chunk {}",
              k, a, b, s[k].forward ? "activation" : "gradient", s[k].mb, s[k].model_chunk,
              v[k].forward ? "activation" : "gradient", v[k].mb, v[k].model_chunk));
    }
  // Progress simulation. ops[r][i]: for comm action i of rank r, the
  // counterpart (rank, action) of each op.
  std::vector<std::map<int, std::vector<std::pair<int, int>>>> needs(pp);
  for (int a = 0; a < pp; ++a)
    for (int b = 0; b < pp; ++b)
      for (size_t k = 0; k < sends[a][b].size(); ++k) {
        needs[a][sends[a][b][k].action].push_back({b, recvs[b][a][k].action});
        needs[b][recvs[b][a][k].action].push_back({a, sends[a][b][k].action});
      }
  std::vector<size_t> pc(pp, 0);
  for (bool progress = true; progress;) {
    progress = false;
    for (int r = 0; r < pp; ++r) {
      const auto& acts = programs[r].actions;
      while (pc[r] < acts.size()) {
        const size_t i = pc[r];
        if (acts[i].kind == PipeAction::Kind::kComm) {
          bool ready = true;
          for (auto [peer, action] : needs[r][static_cast<int>(i)])
            ready = ready && pc[peer] >= static_cast<size_t>(action);
          if (!ready) break;
        }
        ++pc[r];
        progress = true;
      }
    }
  }
  for (int r = 0; r < pp; ++r)
    if (pc[r] < programs[r].actions.size()) {
      const PipeAction& a = programs[r].actions[pc[r]];
      const PipeStep& s = a.comm.front();
      return Status::Internal(fmt::format(
          "pipeline check: deadlock: rank {} waits at action {} ({} of micro-batch {} chunk {} "
          "with peer {}, {} ops grouped)",
          r, pc[r], StepKindName(s.kind), s.microbatch, s.chunk, s.peer, a.comm.size()));
    }
  return Status::Ok();
}

StatusOr<std::vector<PipelineProgram>> CompilePipeline(ScheduleKind kind, int pp, int vpp,
                                                       int64_t microbatches) {
  P3D_ASSIGN_OR_RETURN(PipeSchedule sched, BuildSchedule(kind, pp, vpp, microbatches));
  std::vector<PipelineProgram> all;
  for (int r = 0; r < pp; ++r) {
    P3D_ASSIGN_OR_RETURN(PipelineProgram prog, CompilePipelineProgram(sched[r], vpp));
    all.push_back(std::move(prog));
  }
  const Status ok = CheckPipelinePrograms(all);
  if (!ok.ok())
    return Status::InvalidArgument(
        fmt::format("rule pipeline schedule: {} pp={} vpp={} m={} cannot run with grouped "
                    "send/recv: {}",
                    ScheduleName(kind), pp, vpp, microbatches, ok.message()));
  return all;
}

}  // namespace p3d
