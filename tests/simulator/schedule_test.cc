// Structure of the schedules as data: completeness, matching send/recv,
// Megatron's ordering rules and named errors.
#include "simulator/schedule.h"

#include <gtest/gtest.h>

#include <map>
#include <tuple>

namespace p3d {
namespace {

struct Case {
  ScheduleKind kind;
  int pp, vpp, m;
};
const Case kCases[] = {
    {ScheduleKind::kGPipe, 1, 1, 1},
    {ScheduleKind::kGPipe, 4, 1, 8},
    {ScheduleKind::k1F1B, 1, 1, 3},
    {ScheduleKind::k1F1B, 4, 1, 8},
    {ScheduleKind::k1F1B, 8, 1, 3},  // m < pp
    {ScheduleKind::k1F1B, 3, 1, 7},
    {ScheduleKind::kInterleaved1F1B, 2, 2, 2},
    {ScheduleKind::kInterleaved1F1B, 4, 2, 8},
    {ScheduleKind::kInterleaved1F1B, 4, 3, 12},
    {ScheduleKind::kInterleaved1F1B, 4, 2, 4},  // m == pp: all forwards first
};

TEST(ScheduleTest, EveryMicrobatchChunkOnceForwardOnceBackwardPerRank) {
  for (const Case& c : kCases) {
    auto s = BuildSchedule(c.kind, c.pp, c.vpp, c.m);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_EQ(static_cast<int>(s->size()), c.pp);
    for (int r = 0; r < c.pp; ++r) {
      std::map<std::pair<int, int>, int> fwd, bwd, fwd_pos, bwd_pos;
      int pos = 0;
      for (const PipeStep& st : (*s)[r]) {
        ++pos;
        if (st.kind == StepKind::kForward)
          ++fwd[{st.microbatch, st.chunk}], fwd_pos[{st.microbatch, st.chunk}] = pos;
        if (st.kind == StepKind::kBackward)
          ++bwd[{st.microbatch, st.chunk}], bwd_pos[{st.microbatch, st.chunk}] = pos;
      }
      EXPECT_EQ(static_cast<int>(fwd.size()), c.m * c.vpp) << ScheduleName(c.kind) << " rank " << r;
      EXPECT_EQ(static_cast<int>(bwd.size()), c.m * c.vpp);
      for (auto& [key, n] : fwd) {
        EXPECT_EQ(n, 1);
        EXPECT_EQ(bwd[key], 1);
        EXPECT_LT(fwd_pos[key], bwd_pos[key]) << "backward before forward";
      }
    }
  }
}

TEST(ScheduleTest, SendsMatchReceives) {
  for (const Case& c : kCases) {
    auto s = BuildSchedule(c.kind, c.pp, c.vpp, c.m);
    ASSERT_TRUE(s.ok());
    // Forward: (src rank, dst rank, mb, virtual stage of the sender).
    std::map<std::tuple<int, int, int, int>, int> sends_f, recvs_f, sends_b, recvs_b;
    for (int r = 0; r < c.pp; ++r) {
      for (const PipeStep& st : (*s)[r]) {
        const int vs = st.chunk * c.pp + r;
        switch (st.kind) {
          case StepKind::kSendForward:
            ++sends_f[{r, st.peer, st.microbatch, vs}];
            break;
          case StepKind::kRecvForward:
            ++recvs_f[{st.peer, r, st.microbatch, vs - 1}];
            break;
          case StepKind::kSendBackward:
            ++sends_b[{r, st.peer, st.microbatch, vs}];
            break;
          case StepKind::kRecvBackward:
            ++recvs_b[{st.peer, r, st.microbatch, vs + 1}];
            break;
          default:
            EXPECT_EQ(st.peer, -1);
        }
      }
    }
    EXPECT_EQ(sends_f, recvs_f) << ScheduleName(c.kind) << " pp" << c.pp;
    EXPECT_EQ(sends_b, recvs_b);
    const size_t boundaries = static_cast<size_t>(c.pp * c.vpp - 1) * c.m;
    EXPECT_EQ(sends_f.size(), boundaries);
    EXPECT_EQ(sends_b.size(), boundaries);
  }
}

TEST(ScheduleTest, OneFOneBWarmupDepth) {
  // Rank r runs min(pp-r-1, m) forwards before its first backward.
  auto s = BuildSchedule(ScheduleKind::k1F1B, 4, 1, 8);
  ASSERT_TRUE(s.ok());
  for (int r = 0; r < 4; ++r) {
    int forwards = 0;
    for (const PipeStep& st : (*s)[r]) {
      if (st.kind == StepKind::kBackward) break;
      if (st.kind == StepKind::kForward) ++forwards;
    }
    EXPECT_EQ(forwards, 4 - r - 1 + 1) << r;  // warm-up + the first steady forward
  }
}

TEST(ScheduleTest, WarmupForwardsCountsForwardsBeforeTheFirstBackward) {
  // 1F1B: pp-r-1 warm-up forwards + the first steady one; GPipe: all m.
  auto one = BuildSchedule(ScheduleKind::k1F1B, 4, 1, 8);
  ASSERT_TRUE(one.ok());
  for (int r = 0; r < 4; ++r) EXPECT_EQ(WarmupForwards(*one, r), 4 - r) << r;
  auto gpipe = BuildSchedule(ScheduleKind::kGPipe, 4, 1, 8);
  ASSERT_TRUE(gpipe.ok());
  EXPECT_EQ(WarmupForwards(*gpipe, 2), 8);
  // Interleaved (Megatron): (pp-r-1)*2 + (vpp-1)*pp warm-up + 1, capped at m*vpp.
  auto inter = BuildSchedule(ScheduleKind::kInterleaved1F1B, 4, 2, 8);
  ASSERT_TRUE(inter.ok());
  for (int r = 0; r < 4; ++r) EXPECT_EQ(WarmupForwards(*inter, r), (4 - r - 1) * 2 + 4 + 1) << r;
  // PP = 1: one forward, then its backward.
  auto single = BuildSchedule(ScheduleKind::k1F1B, 1, 1, 8);
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(WarmupForwards(*single, 0), 1);
  // A rank outside the schedule has none.
  EXPECT_EQ(WarmupForwards(*one, 4), 0);
  EXPECT_EQ(WarmupForwards(*one, -1), 0);
}

TEST(ScheduleTest, InvalidInputsGiveNamedErrors) {
  auto expect_error = [](StatusOr<PipeSchedule> s, const char* needle) {
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find(needle), std::string::npos) << s.status().message();
  };
  expect_error(BuildSchedule(ScheduleKind::k1F1B, 0, 1, 4), "pp");
  expect_error(BuildSchedule(ScheduleKind::k1F1B, 2, 0, 4), "vpp");
  expect_error(BuildSchedule(ScheduleKind::k1F1B, 2, 1, 0), "micro-batches");
  expect_error(BuildSchedule(ScheduleKind::k1F1B, 2, 2, 4), "schedule-vpp");
  expect_error(BuildSchedule(ScheduleKind::kInterleaved1F1B, 2, 1, 4), "interleave-vpp");
  expect_error(BuildSchedule(ScheduleKind::kInterleaved1F1B, 4, 2, 6), "interleave-microbatches");
  expect_error(BuildSchedule(ScheduleKind::kInterleaved1F1B, 1, 2, 4), "interleave-pp");
}

}  // namespace
}  // namespace p3d
