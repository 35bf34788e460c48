#include "executor/host/pipeline_program.h"

#include <gtest/gtest.h>

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

// The executor dispatches simulator/schedule.h's lists as they are: every
// layout the gpu_check equivalence runs (and more) must be deadlock-free and
// matched under the grouped-comm model.
TEST(PipelineProgramTest, OneFOneBAndInterleavedListsAreDeadlockFreeAndMatched) {
  for (int pp : {1, 2, 3, 4, 8})
    for (int m : {1, 2, 3, 4, 8, 16}) {
      const auto progs = Compile(ScheduleKind::k1F1B, pp, 1, m);
      Status st = CheckPipelinePrograms(progs);
      EXPECT_TRUE(st.ok()) << "1f1b pp=" << pp << " m=" << m << ": " << st.message();
      for (int r = 0; r < pp; ++r) {
        EXPECT_EQ(Count(progs[r], PipeAction::Kind::kForward), m);
        EXPECT_EQ(Count(progs[r], PipeAction::Kind::kBackward), m);
        // 1F1B keeps min(PP - r, m) micro-batches in flight on rank r.
        EXPECT_EQ(progs[r].slots, std::min(pp - r, m)) << "pp=" << pp << " r=" << r;
      }
    }
  // Interleaved: with m == pp (every forward first) the grouped lists are
  // deadlock-free; with m > pp the list's adjacency grouping is not (rank 0
  // posts a lone send-backward while rank 1 waits for a gradient rank 0 sends
  // later), which the executor refuses by running this very check.
  for (int pp : {2, 4})
    for (int vpp : {2, 3}) {
      const auto progs = Compile(ScheduleKind::kInterleaved1F1B, pp, vpp, pp);
      Status st = CheckPipelinePrograms(progs);
      EXPECT_TRUE(st.ok()) << "interleaved pp=" << pp << " vpp=" << vpp << ": " << st.message();
      for (int r = 0; r < pp; ++r) EXPECT_EQ(Count(progs[r], PipeAction::Kind::kForward), pp * vpp);
      Status deadlock =
          CheckPipelinePrograms(Compile(ScheduleKind::kInterleaved1F1B, pp, vpp, 2 * pp));
      ASSERT_FALSE(deadlock.ok());
      EXPECT_NE(deadlock.message().find("deadlock"), std::string::npos) << deadlock.message();
    }
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

TEST(PipelineProgramTest, RejectsBackwardBeforeForwardAndBadChunks) {
  std::vector<PipeStep> steps = {{StepKind::kBackward, 0, 0, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());
  steps = {{StepKind::kForward, 0, 1, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());
  steps = {{StepKind::kForward, 0, 0, -1}};
  EXPECT_FALSE(CompilePipelineProgram(steps, 1).ok());  // never backwarded
}

}  // namespace
}  // namespace p3d
