#include "executor/host/pipeline_program.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "simulator/memory_model.h"

namespace p3d {
namespace {

std::vector<PipelineProgram> Compile(ScheduleKind kind, int pp, int vpp, int m) {
  StatusOr<PipeSchedule> s = BuildSchedule(kind, pp, vpp, m);
  EXPECT_TRUE(s.ok()) << s.status().message();
  std::vector<PipelineProgram> out;
  for (int r = 0; r < pp; ++r) {
    StatusOr<PipelineProgram> p = CompilePipelineProgram((*s)[r], vpp);
    EXPECT_TRUE(p.ok()) << p.status().message();
    out.push_back(*p);
  }
  return out;
}

int Count(const PipelineProgram& p, PipeAction::Kind kind) {
  int n = 0;
  for (const PipeAction& a : p.actions) n += a.kind == kind;
  return n;
}

// Peak number of (micro-batch, chunk) pairs in flight in the step list's own
// order (from the receive of the input, or the forward, to the backward).
int ListPeakInFlight(const std::vector<PipeStep>& steps) {
  std::set<std::pair<int, int>> live;
  size_t peak = 0;
  for (const PipeStep& s : steps) {
    if (s.kind == StepKind::kRecvForward || s.kind == StepKind::kForward)
      live.insert({s.microbatch, s.chunk});
    if (s.kind == StepKind::kBackward) live.erase({s.microbatch, s.chunk});
    peak = std::max(peak, live.size());
  }
  return static_cast<int>(peak);
}

// The lists grouped the 1F1B way: every run of consecutive send/recv steps
// between two compute steps is one group (slots are not needed by the check).
std::vector<PipelineProgram> GroupAdjacent(const PipeSchedule& s, int vpp) {
  std::vector<PipelineProgram> out;
  for (const std::vector<PipeStep>& steps : s) {
    PipelineProgram p;
    p.vpp = vpp;
    for (const PipeStep& st : steps) {
      if (st.kind == StepKind::kForward || st.kind == StepKind::kBackward) {
        p.actions.push_back({st.kind == StepKind::kForward ? PipeAction::Kind::kForward
                                                           : PipeAction::Kind::kBackward,
                             st.microbatch,
                             st.chunk,
                             0,
                             {},
                             {}});
        continue;
      }
      if (p.actions.empty() || p.actions.back().kind != PipeAction::Kind::kComm)
        p.actions.push_back({PipeAction::Kind::kComm, -1, -1, -1, {}, {}});
      p.actions.back().comm.push_back(st);
      p.actions.back().comm_slot.push_back(0);
    }
    out.push_back(std::move(p));
  }
  return out;
}

// The executor dispatches simulator/schedule.h's lists: every layout p3d-run
// accepts must be deadlock-free and matched under the grouped-comm model.
TEST(PipelineProgramTest, OneFOneBAndGPipeListsAreDeadlockFreeAndMatched) {
  for (int pp = 1; pp <= 8; ++pp)
    for (int m = 1; m <= 32; ++m) {
      const auto progs = Compile(ScheduleKind::k1F1B, pp, 1, m);
      Status st = CheckPipelinePrograms(progs);
      EXPECT_TRUE(st.ok()) << "1f1b pp=" << pp << " m=" << m << ": " << st.message();
      for (int r = 0; r < pp; ++r) {
        EXPECT_EQ(Count(progs[r], PipeAction::Kind::kForward), m);
        EXPECT_EQ(Count(progs[r], PipeAction::Kind::kBackward), m);
        // 1F1B keeps min(PP - r, m) micro-batches in flight on rank r.
        EXPECT_EQ(progs[r].slots, std::min(pp - r, m)) << "pp=" << pp << " r=" << r;
      }
      const auto gpipe = Compile(ScheduleKind::kGPipe, pp, 1, m);
      st = CheckPipelinePrograms(gpipe);
      EXPECT_TRUE(st.ok()) << "gpipe pp=" << pp << " m=" << m << ": " << st.message();
      for (int r = 0; r < pp; ++r) EXPECT_EQ(gpipe[r].slots, m);  // every forward first
    }
}

// Interleaved 1F1B runs for every m divisible by pp (Megatron's constraint,
// BuildSchedule's rule interleave-microbatches), with the chunk-sized
// activation slots of the list's own order.
TEST(PipelineProgramTest, InterleavedListsAreDeadlockFreeForEveryMultipleOfPp) {
  for (int pp = 2; pp <= 8; ++pp)
    for (int vpp = 2; vpp <= 4; ++vpp)
      for (int m = pp; m <= 32; m += pp) {
        StatusOr<PipeSchedule> s = BuildSchedule(ScheduleKind::kInterleaved1F1B, pp, vpp, m);
        ASSERT_TRUE(s.ok()) << s.status().message();
        const auto progs = Compile(ScheduleKind::kInterleaved1F1B, pp, vpp, m);
        Status st = CheckPipelinePrograms(progs);
        EXPECT_TRUE(st.ok()) << "interleaved pp=" << pp << " vpp=" << vpp << " m=" << m << ": "
                             << st.message();
        for (int r = 0; r < pp; ++r) {
          EXPECT_EQ(Count(progs[r], PipeAction::Kind::kForward), m * vpp);
          EXPECT_EQ(Count(progs[r], PipeAction::Kind::kBackward), m * vpp);
          EXPECT_EQ(progs[r].slots, ListPeakInFlight((*s)[r]))
              << "pp=" << pp << " vpp=" << vpp << " m=" << m << " r=" << r;
        }
      }
}

// Chunk-sized slots of interleaved PP2 / PP4 (VPP 2), derived by hand from
// simulator/schedule.cc: rank r runs W_r = 2*(PP-r-1) + (VPP-1)*PP warm-up
// forwards (all m*VPP when m == PP), then forward/backward pairs; a slot is
// taken at a forward (or its input's receive) and freed at the backward.
//   m == PP: every forward first, so all m*VPP pairs are in flight: PP2 m2 ->
//     4 on both ranks, PP4 m4 -> 8 on every rank.
//   m == 2*PP: the W_r warm-up pairs plus the steady forward, W_r + 1:
//     PP2 m4: r0 2+2+1 = 5, r1 0+2+1 = 3;
//     PP4 m8: r0 6+4+1 = 11, r1 4+4+1 = 9, r2 2+4+1 = 7, r3 0+4+1 = 5.
//   (PP2 m4 rank 0 by chunk: F0.0 F1.0 F0.1 F1.1 | F2.0 B0.1 F3.0 B1.1 ...:
//   after F3.0, chunk 0 holds micro-batches 0-3 and chunk 1 holds 1, i.e. 5
//   pairs; per-chunk pools would need chunk 0's peak 4 + chunk 1's peak 2 = 6,
//   and one slot per micro-batch spanning both chunks 4 x 2 = 8.)
// Units of a micro-batch's stage layers: slots / VPP, which for m > PP is the
// simulator's InFlightMicroBatches (Megatron's warm-up + 1, Korthikanti et al.
// 2022 sec. 1: PP * (1 + (PP-1)/(PP*VPP)) on rank 0).
TEST(PipelineProgramTest, InterleavedSlotsArePairsInFlightSharedByTheChunks) {
  struct Case {
    int pp, m;
    std::vector<int> slots;  // per rank
  };
  const Case cases[] = {
      {2, 2, {4, 4}}, {2, 4, {5, 3}}, {4, 4, {8, 8, 8, 8}}, {4, 8, {11, 9, 7, 5}}};
  for (const Case& c : cases) {
    const auto progs = Compile(ScheduleKind::kInterleaved1F1B, c.pp, 2, c.m);
    for (int r = 0; r < c.pp; ++r) {
      EXPECT_EQ(progs[r].slots, c.slots[r]) << "pp=" << c.pp << " m=" << c.m << " r=" << r;
      if (c.m > c.pp) {
        EXPECT_DOUBLE_EQ(progs[r].slots / 2.0,
                         InFlightMicroBatches(ScheduleKind::kInterleaved1F1B, c.pp, 2, c.m, r))
            << "pp=" << c.pp << " m=" << c.m << " r=" << r;
      }
    }
  }
  // The chunks share the pool. PP2 m4 rank 0 (lowest free slot first):
  // F0.0 -> 0, F1.0 -> 1, [RF0.1] F0.1 -> 2, [RF1.1] F1.1 -> 3, F2.0 -> 4,
  // B0.1 frees 2, F3.0 -> 2: chunk 0 takes the slot chunk 1 just gave back.
  const auto progs = Compile(ScheduleKind::kInterleaved1F1B, 2, 2, 4);
  std::map<std::pair<int, int>, int> slot;  // (mb, chunk) -> slot of its forward
  for (const PipeAction& a : progs[0].actions)
    if (a.kind == PipeAction::Kind::kForward) slot[{a.microbatch, a.chunk}] = a.slot;
  EXPECT_EQ(slot[std::make_pair(0, 1)], 2);
  EXPECT_EQ(slot[std::make_pair(2, 0)], 4);
  EXPECT_EQ(slot[std::make_pair(3, 0)], 2);
}

// Why interleaved needs its own grouping: grouped the 1F1B way, the lists
// deadlock as soon as m > pp (and only then: with m == pp both groupings are
// the same).
TEST(PipelineProgramTest, InterleavedGroupedLikeOneFOneBDeadlocksWhenMExceedsPp) {
  for (int pp : {2, 4})
    for (int vpp : {2, 3}) {
      StatusOr<PipeSchedule> s = BuildSchedule(ScheduleKind::kInterleaved1F1B, pp, vpp, 2 * pp);
      ASSERT_TRUE(s.ok());
      Status st = CheckPipelinePrograms(GroupAdjacent(*s, vpp));
      ASSERT_FALSE(st.ok()) << "pp=" << pp << " vpp=" << vpp;
      EXPECT_NE(st.message().find("deadlock"), std::string::npos) << st.message();
      s = BuildSchedule(ScheduleKind::kInterleaved1F1B, pp, vpp, pp);
      ASSERT_TRUE(s.ok());
      EXPECT_TRUE(CheckPipelinePrograms(GroupAdjacent(*s, vpp)).ok());
    }
}

// What p3d-run checks before any rank starts: interleaved runs for m > pp,
// and m % pp != 0 is refused by name.
TEST(PipelineProgramTest, CompilePipelineAcceptsInterleavedMultiplesOfPpOnly) {
  StatusOr<std::vector<PipelineProgram>> ok =
      CompilePipeline(ScheduleKind::kInterleaved1F1B, 4, 2, 12);
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->size(), 4u);
  StatusOr<std::vector<PipelineProgram>> bad =
      CompilePipeline(ScheduleKind::kInterleaved1F1B, 4, 2, 6);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("rule interleave-microbatches"), std::string::npos)
      << bad.status().message();
}

TEST(PipelineProgramTest, InterleavedSteadyStatePostsOneGroupPerForwardBackwardPair) {
  // PP=2, VPP=2, m=4, rank 1 (Fm.c: micro-batch m, chunk c):
  //   [RF0.0] F0.0 [SF0.0 RF1.0] F1.0 [SF1.0 RF0.1] F0.1 B0.1 [SB0.1 RF1.1]
  //   F1.1 B1.1 [SB1.1 RF2.0 RB0.0] F2.0 B0.0 [SF2.0 SB0.0 RF3.0 RB1.0] ...
  const auto progs = Compile(ScheduleKind::kInterleaved1F1B, 2, 2, 4);
  const auto& a = progs[1].actions;
  ASSERT_GT(a.size(), 13u);
  EXPECT_EQ(a[11].kind, PipeAction::Kind::kForward);
  EXPECT_EQ(a[11].microbatch, 2);
  EXPECT_EQ(a[12].kind, PipeAction::Kind::kBackward);
  EXPECT_EQ(a[12].microbatch, 0);
  EXPECT_EQ(a[12].chunk, 0);
  ASSERT_EQ(a[13].kind, PipeAction::Kind::kComm);
  ASSERT_EQ(a[13].comm.size(), 4u);
  const StepKind want[] = {StepKind::kSendForward, StepKind::kSendBackward, StepKind::kRecvForward,
                           StepKind::kRecvBackward};
  const int want_mb[] = {2, 0, 3, 1};
  for (int k = 0; k < 4; ++k) {
    EXPECT_EQ(a[13].comm[k].kind, want[k]) << k;
    EXPECT_EQ(a[13].comm[k].microbatch, want_mb[k]) << k;
  }
  // The group after the last warm-up forward of rank 0 already receives the
  // first output gradient: [SF1.1 RB0.1] F2.0 B0.1.
  const auto& r0 = progs[0].actions;
  ASSERT_GT(r0.size(), 9u);
  ASSERT_EQ(r0[7].kind, PipeAction::Kind::kComm);
  ASSERT_EQ(r0[7].comm.size(), 2u);
  EXPECT_EQ(r0[7].comm[1].kind, StepKind::kRecvBackward);
  EXPECT_EQ(r0[8].kind, PipeAction::Kind::kForward);
  EXPECT_EQ(r0[9].kind, PipeAction::Kind::kBackward);
}

TEST(PipelineProgramTest, GroupsConsecutiveCommStepsBetweenComputeSteps) {
  // PP=2, m=2, rank 0: F0 [SF0] F1 [SF1 RB0] B0 [RB1] B1.
  const auto progs = Compile(ScheduleKind::k1F1B, 2, 1, 2);
  const auto& a = progs[0].actions;
  ASSERT_EQ(a.size(), 7u);
  EXPECT_EQ(a[3].kind, PipeAction::Kind::kComm);
  ASSERT_EQ(a[3].comm.size(), 2u);
  EXPECT_EQ(a[3].comm[0].kind, StepKind::kSendForward);
  EXPECT_EQ(a[3].comm[1].kind, StepKind::kRecvBackward);
  EXPECT_EQ(a[3].comm_slot[1], 0);  // gradient for micro-batch 0, still in slot 0
  EXPECT_EQ(a[2].slot, 1);          // micro-batch 1 in flight next to 0
}

TEST(PipelineProgramTest, UngroupedSendsDeadlock) {
  // The same 1F1B lists with every comm step posted on its own: steady state
  // has rank 0 sending forward while rank 1 sends backward.
  StatusOr<PipeSchedule> s = BuildSchedule(ScheduleKind::k1F1B, 2, 1, 4);
  ASSERT_TRUE(s.ok());
  std::vector<PipelineProgram> progs;
  for (int r = 0; r < 2; ++r) {
    StatusOr<PipelineProgram> p = CompilePipelineProgram((*s)[r], 1);
    ASSERT_TRUE(p.ok());
    PipelineProgram split;
    split.vpp = 1;
    for (const PipeAction& a : p->actions) {
      if (a.kind != PipeAction::Kind::kComm) {
        split.actions.push_back(a);
        continue;
      }
      for (size_t k = 0; k < a.comm.size(); ++k)
        split.actions.push_back(
            {PipeAction::Kind::kComm, -1, -1, -1, {a.comm[k]}, {a.comm_slot[k]}});
    }
    progs.push_back(split);
  }
  Status st = CheckPipelinePrograms(progs);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("deadlock"), std::string::npos) << st.message();
}

TEST(PipelineProgramTest, DetectsMismatchedMessages) {
  auto progs = Compile(ScheduleKind::k1F1B, 2, 1, 2);
  // Swap the micro-batches of rank 0's two forward sends.
  std::vector<PipeStep*> recvs;
  for (PipeAction& a : progs[0].actions)
    for (PipeStep& s : a.comm)
      if (s.kind == StepKind::kSendForward) recvs.push_back(&s);
  ASSERT_EQ(recvs.size(), 2u);
  std::swap(recvs[0]->microbatch, recvs[1]->microbatch);
  Status st = CheckPipelinePrograms(progs);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("expects"), std::string::npos) << st.message();
}

TEST(PipelineProgramTest, RejectsBackwardBeforeForwardBadChunksAndStrayComm) {
  std::vector<PipeStep> steps = {{StepKind::kBackward, 0, 0, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());
  steps = {{StepKind::kForward, 0, 1, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());
  steps = {{StepKind::kForward, 0, 0, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());  // never backwarded
  // A send that does not follow the compute step whose result it sends.
  steps = {{StepKind::kForward, 0, 0, -1},
           {StepKind::kSendForward, 1, 0, 1},
           {StepKind::kBackward, 0, 0, -1}};
  Status st = CompilePipelineProgram(steps, 1).status();
  EXPECT_NE(st.message().find("does not directly follow"), std::string::npos) << st.message();
  // A receive that is not for the compute step right after it.
  steps = {{StepKind::kRecvBackward, 0, 0, 1},
           {StepKind::kForward, 0, 0, -1},
           {StepKind::kBackward, 0, 0, -1}};
  st = CompilePipelineProgram(steps, 1).status();
  EXPECT_NE(st.message().find("right before its compute"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace p3d
