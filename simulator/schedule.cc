#include "simulator/schedule.h"

#include <fmt/format.h>

#include <algorithm>

#include "common/enum_names.h"

namespace p3d {

namespace {

constexpr EnumEntry<ScheduleKind> kScheduleNames[] = {
    {ScheduleKind::kGPipe, "gpipe"},
    {ScheduleKind::k1F1B, "1f1b"},
    {ScheduleKind::kInterleaved1F1B, "interleaved-1f1b"}};
constexpr EnumEntry<StepKind> kStepKindNames[] = {{StepKind::kForward, "forward"},
                                                  {StepKind::kBackward, "backward"},
                                                  {StepKind::kSendForward, "send-forward"},
                                                  {StepKind::kRecvForward, "recv-forward"},
                                                  {StepKind::kSendBackward, "send-backward"},
                                                  {StepKind::kRecvBackward, "recv-backward"}};

}  // namespace

const char* ScheduleName(ScheduleKind kind) { return EnumName(kScheduleNames, kind); }

const char* StepKindName(StepKind kind) { return EnumName(kStepKindNames, kind); }

namespace {

// Appends the steps of one forward or backward of (mb, chunk) on rank r,
// wrapped in the receive it waits for and the send it produces. Virtual stage
// of (r, c) is c*pp + r; its predecessor is (r-1, c), or (pp-1, c-1) on rank 0.
class ProgramWriter {
 public:
  ProgramWriter(int pp, int vpp) : pp_(pp), vpp_(vpp) {}

  void Forward(std::vector<PipeStep>& prog, int r, int mb, int c) const {
    if (HasPrev(r, c)) prog.push_back({StepKind::kRecvForward, mb, c, PrevRank(r)});
    prog.push_back({StepKind::kForward, mb, c, -1});
    if (HasNext(r, c)) prog.push_back({StepKind::kSendForward, mb, c, NextRank(r)});
  }
  void Backward(std::vector<PipeStep>& prog, int r, int mb, int c) const {
    if (HasNext(r, c)) prog.push_back({StepKind::kRecvBackward, mb, c, NextRank(r)});
    prog.push_back({StepKind::kBackward, mb, c, -1});
    if (HasPrev(r, c)) prog.push_back({StepKind::kSendBackward, mb, c, PrevRank(r)});
  }

 private:
  bool HasPrev(int r, int c) const { return c * pp_ + r > 0; }
  bool HasNext(int r, int c) const { return c * pp_ + r < pp_ * vpp_ - 1; }
  int PrevRank(int r) const { return (r + pp_ - 1) % pp_; }
  int NextRank(int r) const { return (r + 1) % pp_; }
  int pp_, vpp_;
};

PipeSchedule GPipe(int pp, int m) {
  ProgramWriter w(pp, 1);
  PipeSchedule s(pp);
  for (int r = 0; r < pp; ++r) {
    for (int mb = 0; mb < m; ++mb) w.Forward(s[r], r, mb, 0);
    for (int mb = 0; mb < m; ++mb) w.Backward(s[r], r, mb, 0);
  }
  return s;
}

// Plain 1F1B (PipeDream-flush / Megatron non-interleaved): rank r runs
// min(pp-r-1, m) warm-up forwards, then alternates one forward and one
// backward, then drains the remaining backwards.
PipeSchedule OneFOneB(int pp, int m) {
  ProgramWriter w(pp, 1);
  PipeSchedule s(pp);
  for (int r = 0; r < pp; ++r) {
    const int warmup = std::min(pp - r - 1, m);
    for (int i = 0; i < warmup; ++i) w.Forward(s[r], r, i, 0);
    for (int i = 0; i < m - warmup; ++i) {
      w.Forward(s[r], r, warmup + i, 0);
      w.Backward(s[r], r, i, 0);
    }
    for (int i = m - warmup; i < m; ++i) w.Backward(s[r], r, i, 0);
  }
  return s;
}

// Megatron's interleaved 1F1B (schedules.py,
// forward_backward_pipelining_with_interleaving). Virtual micro-batch k in
// [0, m*vpp) maps to chunk (k % (pp*vpp)) / pp (reversed for backward) and
// micro-batch (k / (pp*vpp)) * pp + k % pp. Warm-up: (pp-r-1)*2 + (vpp-1)*pp
// forwards, capped at m*vpp; all forwards first when m == pp.
PipeSchedule Interleaved(int pp, int vpp, int m) {
  ProgramWriter w(pp, vpp);
  PipeSchedule s(pp);
  const int total = m * vpp;
  auto chunk_of = [&](int k, bool forward) {
    int c = (k % (pp * vpp)) / pp;
    return forward ? c : vpp - 1 - c;
  };
  auto mb_of = [&](int k) { return (k / (pp * vpp)) * pp + k % pp; };
  for (int r = 0; r < pp; ++r) {
    int warmup = m == pp ? total : std::min((pp - r - 1) * 2 + (vpp - 1) * pp, total);
    for (int k = 0; k < warmup; ++k) w.Forward(s[r], r, mb_of(k), chunk_of(k, true));
    for (int i = 0; i < total - warmup; ++i) {
      const int kf = warmup + i;
      w.Forward(s[r], r, mb_of(kf), chunk_of(kf, true));
      w.Backward(s[r], r, mb_of(i), chunk_of(i, false));
    }
    for (int k = total - warmup; k < total; ++k) w.Backward(s[r], r, mb_of(k), chunk_of(k, false));
  }
  return s;
}

}  // namespace

StatusOr<PipeSchedule> BuildSchedule(ScheduleKind kind, int pp, int vpp, int64_t microbatches) {
  if (pp < 1) return Status::InvalidArgument(fmt::format("schedule: pp must be >= 1, got {}", pp));
  if (vpp < 1)
    return Status::InvalidArgument(fmt::format("schedule: vpp must be >= 1, got {}", vpp));
  if (microbatches < 1)
    return Status::InvalidArgument(
        fmt::format("schedule: micro-batches (grad_accum) must be >= 1, got {}", microbatches));
  if (microbatches > (int64_t{1} << 24))
    return Status::InvalidArgument(
        fmt::format("schedule: {} micro-batches is implausibly many", microbatches));
  const int m = static_cast<int>(microbatches);
  switch (kind) {
    case ScheduleKind::kGPipe:
    case ScheduleKind::k1F1B:
      if (vpp != 1)
        return Status::InvalidArgument(
            fmt::format("rule schedule-vpp: {} runs one chunk per rank (vpp=1), got vpp={}; use "
                        "interleaved-1f1b",
                        ScheduleName(kind), vpp));
      return kind == ScheduleKind::kGPipe ? GPipe(pp, m) : OneFOneB(pp, m);
    case ScheduleKind::kInterleaved1F1B:
      if (vpp < 2)
        return Status::InvalidArgument(
            fmt::format("rule interleave-vpp: interleaved-1f1b needs vpp >= 2, got vpp={}", vpp));
      if (pp < 2)
        return Status::InvalidArgument(
            "rule interleave-pp: interleaved-1f1b needs pp >= 2 (chunks of one rank would feed "
            "themselves)");
      if (m % pp != 0)
        return Status::InvalidArgument(fmt::format(
            "rule interleave-microbatches: interleaved-1f1b needs micro-batches % pp == 0, got "
            "m={} pp={}",
            m, pp));
      return Interleaved(pp, vpp, m);
  }
  return Status::InvalidArgument("schedule: unknown schedule kind");
}

int64_t WarmupForwards(const PipeSchedule& schedule, int rank) {
  if (rank < 0 || rank >= static_cast<int>(schedule.size())) return 0;
  int64_t forwards = 0;
  for (const PipeStep& step : schedule[rank]) {
    if (step.kind == StepKind::kBackward) break;
    forwards += step.kind == StepKind::kForward;
  }
  return forwards;
}

}  // namespace p3d
