// Properties of the plan search: everything it enumerates is legal, nothing
// legal is missed, fixed dimensions are honoured, and the ranking is by
// predicted step time among plans that fit.
#include "planner/search.h"

#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "models/zoo.h"
#include "planner/rules.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"
#include "tests/planner/catalog_request.h"

namespace p3d {
namespace {


TEST(SearchTest, EveryCandidateIsLegalAndUnique) {
  PlanRequest r = CatalogRequest("llama-2-13b", "a100-80gb", 16, 64);
  SearchOptions o;
  std::set<std::tuple<int, int, int, int, int, int64_t, int, bool, int>> seen;
  int64_t n = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    ++n;
    EXPECT_TRUE(CheckPlan(r, p).ok()) << PlanSummary(p) << ": " << CheckPlan(r, p).message();
    EXPECT_TRUE(seen.insert({p.dp, p.tp, p.pp, p.vpp, p.zero, p.micro_batch, int(p.recompute),
                             p.sequence_parallel, int(p.offload)}).second)
        << "duplicate " << PlanSummary(p);
  };
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(n, res->candidates);
  EXPECT_GT(n, 100);
}

// Brute force over a superset of the space with CheckPlan as the oracle: the
// search enumerates exactly the legal plans.
TEST(SearchTest, EnumeratesExactlyTheLegalPlans) {
  PlanRequest r = CatalogRequest("gpt2-xl", "a100-40gb", 8, 32);  // 25 heads: TP in {1, 5, 25} only
  r.training.seq = 1024;                                   // its learned position table
  SearchOptions o;
  int64_t enumerated = 0;
  o.on_candidate = [&](const Plan&, double, bool) { ++enumerated; };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  int64_t legal = 0;
  for (int dp = 1; dp <= 8; ++dp)
    for (int tp = 1; tp <= 8; ++tp)
      for (int pp = 1; pp <= 8; ++pp)
        for (int vpp = 1; vpp <= 48; ++vpp)
          for (int zero = 0; zero <= 3; ++zero)
            for (int64_t mb = 1; mb <= 32; ++mb)
              for (int rc = 0; rc < 3; rc += 1 + (rc == 0))  // fused core: selective == none, not searched
                for (int sp = 0; sp < 2; ++sp)
                  for (int off = 0; off < 3; ++off) {
                    Plan p;
                    p.dp = dp, p.tp = tp, p.pp = pp, p.vpp = vpp, p.zero = zero, p.micro_batch = mb;
                    p.grad_accum = r.training.global_batch / std::max<int64_t>(1, mb * dp);
                    p.recompute = Recompute(rc);
                    p.sequence_parallel = sp;
                    p.offload = Offload(off);
                    if (CheckPlan(r, p).ok()) ++legal;
                  }
  EXPECT_EQ(enumerated, legal);
}

TEST(SearchTest, RanksFittingPlansByStepTime) {
  PlanRequest r = CatalogRequest("llama-2-70b", "h100-sxm", 64);
  SearchOptions o;
  o.top_k = 20;
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok());
  ASSERT_FALSE(res->plans.empty());
  for (size_t i = 0; i < res->plans.size(); ++i) {
    EXPECT_TRUE(res->plans[i].fits);
    EXPECT_LE(res->plans[i].memory.peak().total(), r.cluster.gpu.memory_bytes);
    if (i > 0) EXPECT_LE(res->plans[i - 1].time.step_s, res->plans[i].time.step_s * (1 + 1e-12));
  }
}

TEST(SearchTest, FixedDimensionsAreHonoured) {
  PlanRequest r = CatalogRequest("llama-2-70b", "a100-80gb", 64);
  SearchOptions o;
  o.fixed.dp = 8;
  o.fixed.tp = 4;
  o.fixed.pp = 2;
  o.fixed.zero = 2;
  o.fixed.micro_batch = 2;
  o.on_candidate = [&](const Plan& p, double, bool) {
    EXPECT_EQ(p.dp, 8);
    EXPECT_EQ(p.tp, 4);
    EXPECT_EQ(p.pp, 2);
    EXPECT_EQ(p.zero, 2);
    EXPECT_EQ(p.micro_batch, 2);
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
}

TEST(SearchTest, ImpossibleLayoutNamesTheRule) {
  PlanRequest r = CatalogRequest("llama-2-13b", "a100-80gb", 16, 64);
  SearchOptions o;
  o.fixed.tp = 16;  // published.md sec 4: 40 heads forbid TP=16
  o.rules.allow_tp_across_nodes = true;
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), Status::Code::kInfeasible);
  EXPECT_NE(res.status().message().find("heads%tp"), std::string::npos) << res.status().message();
}

TEST(SearchTest, NothingFitsReturnsClosestMisses) {
  // 13B on 8 x 24 GB cards without offload: model states alone exceed 24 GB even at TP8 (issue 8).
  PlanRequest r = CatalogRequest("llama-2-13b", "rtx3090", 8, 64);
  SearchOptions o;
  o.fixed.offload = Offload::kNone;
  o.top_k = 5;
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->fitting, 0);
  ASSERT_EQ(res->plans.size(), 5u);
  for (size_t i = 1; i < res->plans.size(); ++i)
    EXPECT_LE(res->plans[i - 1].memory.peak().total(), res->plans[i].memory.peak().total());
}

// Over the enumerated space: model-state memory never rises with the ZeRO
// stage, activations never fall as the micro-batch rises (issue 2 properties).
TEST(SearchTest, MemoryMonotoneInZeroAndMicroBatch) {
  PlanRequest r = CatalogRequest("llama-2-70b", "h100-sxm", 64);
  SearchOptions o;
  int checked = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    int stage = 0;
    MemoryBreakdown m = PeakStageMemory(r.model, r.training, r.cluster, p, &stage);
    if (p.zero < 3 && p.dp > 1) {
      Plan q = p;
      q.zero = p.zero + 1;
      MemoryBreakdown n = PeakStageMemory(r.model, r.training, r.cluster, q, &stage);
      EXPECT_LE(n.weights + n.gradients + n.optimizer, m.weights + m.gradients + m.optimizer + 1);
    }
    int64_t per_dp = p.micro_batch * p.grad_accum;
    if (p.vpp == 1 && per_dp % (2 * p.micro_batch) == 0) {
      Plan q = p;
      q.micro_batch *= 2;
      q.grad_accum /= 2;
      MemoryBreakdown n = PeakStageMemory(r.model, r.training, r.cluster, q, &stage);
      if (q.grad_accum >= p.pp) EXPECT_GE(n.activations + 1, m.activations) << PlanSummary(p);
    }
    ++checked;
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_GT(checked, 1000);
}

}  // namespace
}  // namespace p3d
