#include "executor/host/pipeline_program.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

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

// Peak number of micro-batches of one chunk in flight in the step list's own
// order (from the receive of the input, or the forward, to the backward).
int ListPeakInFlight(const std::vector<PipeStep>& steps, int vpp) {
  std::vector<std::set<int>> live(vpp);
  size_t peak = 0;
  for (const PipeStep& s : steps) {
    if (s.kind == StepKind::kRecvForward || s.kind == StepKind::kForward)
      live[s.chunk].insert(s.microbatch);
    if (s.kind == StepKind::kBackward) live[s.chunk].erase(s.microbatch);
    for (const auto& l : live) peak = std::max(peak, l.size());
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
// BuildSchedule's rule interleave-microbatches), with the activation slots of
// the list's own order.
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
          EXPECT_EQ(progs[r].slots, ListPeakInFlight((*s)[r], vpp))
              << "pp=" << pp << " vpp=" << vpp << " m=" << m << " r=" << r;
        }
      }
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
