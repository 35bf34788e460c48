// Pipeline simulation: closed forms of the even case (Narayanan et al. 2021,
// published.md sec. 2: 1F1B bubble (p-1)/m, interleaved (p-1)/(v*m)) are tests
// of the simulation; uneven stages, m < p, p2p and errors.
#include "simulator/pipeline_sim.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace p3d {
namespace {

PipelineCosts Even(int pp, int vpp, int m, double f, double b, double p2p = 0) {
  PipelineCosts c;
  c.pp = pp, c.vpp = vpp, c.microbatches = m;
  c.forward_s.assign(pp * vpp, f / vpp);
  c.backward_s.assign(pp * vpp, b / vpp);
  if (p2p > 0) c.p2p_s.assign(pp * vpp - 1, p2p);
  return c;
}

PipelineResult Simulate(ScheduleKind kind, const PipelineCosts& c) {
  auto s = BuildSchedule(kind, c.pp, c.vpp, c.microbatches);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  auto r = SimulatePipeline(*s, c, true);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return *r;
}

TEST(PipelineSimTest, OneFOneBAndGPipeBubbleIsPMinusOneOverM) {
  for (int pp : {1, 2, 4, 8}) {
    for (int m : {1, 3, 8, 32}) {
      for (double b : {1.0, 2.0, 3.0}) {
        for (ScheduleKind kind : {ScheduleKind::k1F1B, ScheduleKind::kGPipe}) {
          PipelineResult r = Simulate(kind, Even(pp, 1, m, 1.0, b));
          for (int rank = 0; rank < pp; ++rank) {
            EXPECT_NEAR(r.idle_s(rank) / r.busy_s[rank], double(pp - 1) / m, 1e-9)
                << ScheduleName(kind) << " pp" << pp << " m" << m << " rank " << rank;
          }
          EXPECT_NEAR(r.makespan_s, (m + pp - 1) * (1.0 + b), 1e-9);
        }
      }
    }
  }
}

TEST(PipelineSimTest, InterleavedBubbleIsPMinusOneOverVM) {
  for (int pp : {2, 4, 8}) {
    for (int vpp : {2, 3, 4}) {
      for (int mult : {1, 2, 4}) {
        const int m = pp * mult;
        for (double b : {1.0, 2.0}) {
          PipelineResult r = Simulate(ScheduleKind::kInterleaved1F1B, Even(pp, vpp, m, 1.0, b));
          for (int rank = 0; rank < pp; ++rank) {
            EXPECT_NEAR(r.idle_s(rank) / r.busy_s[rank], double(pp - 1) / (vpp * m), 1e-9)
                << "pp" << pp << " v" << vpp << " m" << m << " b" << b << " rank " << rank;
          }
        }
      }
    }
  }
}

TEST(PipelineSimTest, MicrobatchesFewerThanStages) {
  // m < p: one micro-batch crosses all stages; makespan = (m + p - 1)(f + b).
  PipelineResult r = Simulate(ScheduleKind::k1F1B, Even(8, 1, 3, 1.0, 2.0));
  EXPECT_NEAR(r.makespan_s, (3 + 8 - 1) * 3.0, 1e-9);
}

TEST(PipelineSimTest, UnevenStagesSlowestStageSetsThePace) {
  // Last stage 50% slower (LM head + loss): in steady state it gates every
  // micro-batch, so makespan >= m * its work + the others' fill and drain.
  PipelineCosts c = Even(4, 1, 16, 1.0, 2.0);
  c.forward_s[3] = 1.5, c.backward_s[3] = 3.0;
  PipelineResult r = Simulate(ScheduleKind::k1F1B, c);
  EXPECT_NEAR(r.busy_s[3], 16 * 4.5, 1e-9);
  EXPECT_GE(r.makespan_s, 16 * 4.5 + 3 * 1.0 + 3 * 2.0 - 1e-9);
  EXPECT_GT(r.makespan_s, Simulate(ScheduleKind::k1F1B, Even(4, 1, 16, 1.0, 2.0)).makespan_s);
}

TEST(PipelineSimTest, P2pOnFillAndDrainIsExposed) {
  // 1F1B even case with p2p time t per boundary: the first micro-batch's
  // forward and the last one's backward each cross p-1 boundaries on the
  // critical chain; in steady state transfers hide behind compute.
  const int pp = 4, m = 8;
  const double t = 0.1;
  PipelineResult r = Simulate(ScheduleKind::k1F1B, Even(pp, 1, m, 1.0, 2.0, t));
  EXPECT_GE(r.makespan_s, (m + pp - 1) * 3.0 + 2 * (pp - 1) * t - 1e-9);
  EXPECT_NEAR(r.critical_p2p_s, r.makespan_s - (m + pp - 1) * 3.0, 1e-9);
  EXPECT_GT(r.critical_p2p_s, 0);
}

TEST(PipelineSimTest, EventsCoverEveryStepOnce) {
  PipelineResult r = Simulate(ScheduleKind::kInterleaved1F1B, Even(4, 2, 8, 1.0, 2.0, 0.01));
  int fwd = 0, bwd = 0;
  for (const TimelineEvent& e : r.events) {
    EXPECT_LE(e.start_s, e.end_s);
    EXPECT_LE(e.end_s, r.makespan_s + 1e-12);
    fwd += e.kind == TimelineKind::kForward;
    bwd += e.kind == TimelineKind::kBackward;
  }
  EXPECT_EQ(fwd, 4 * 2 * 8);
  EXPECT_EQ(bwd, 4 * 2 * 8);
}

TEST(PipelineSimTest, InvalidCostsGiveNamedErrors) {
  auto s = BuildSchedule(ScheduleKind::k1F1B, 4, 1, 8);
  ASSERT_TRUE(s.ok());
  PipelineCosts c = Even(4, 1, 8, 1.0, 2.0);
  c.forward_s.pop_back();
  auto r = SimulatePipeline(*s, c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("forward_s"), std::string::npos);
  c = Even(4, 1, 8, 1.0, 2.0);
  c.backward_s[1] = -1;
  EXPECT_FALSE(SimulatePipeline(*s, c).ok());
  c = Even(2, 1, 8, 1.0, 2.0);
  r = SimulatePipeline(*s, c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("costs.pp"), std::string::npos);
  // A schedule whose first step receives from a stage that never sends deadlocks.
  PipeSchedule bad(2);
  bad[0] = {{StepKind::kRecvBackward, 0, 0, 1}, {StepKind::kForward, 0, 0, -1}};
  bad[1] = {{StepKind::kRecvForward, 0, 0, 0}, {StepKind::kForward, 0, 0, -1}};
  c = Even(2, 1, 1, 1.0, 2.0);
  r = SimulatePipeline(bad, c);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("deadlock"), std::string::npos);
}

}  // namespace
}  // namespace p3d
