// Properties of the plan search: everything it enumerates is legal, nothing
// legal is missed, fixed dimensions are honoured, and the ranking is by
// predicted step time among plans that fit.
#include "planner/search.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <optional>
#include <set>
#include <tuple>
#include <vector>

#include "models/zoo.h"
#include "planner/rules.h"
#include "planner/stage_split.h"
#include "simulator/framework_profile.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"
#include "tests/planner/catalog_request.h"

namespace p3d {
namespace {


TEST(SearchTest, EveryCandidateIsLegalAndUnique) {
  PlanRequest r = CatalogRequest("llama-2-13b", "a100-80gb", 16, 64);
  SearchOptions o;
  std::set<std::tuple<int, int, int, int, int, int, int, int64_t, int, bool, int, int, int>> seen;
  int64_t n = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    ++n;
    EXPECT_TRUE(CheckPlan(r, p).ok()) << PlanSummary(p) << ": " << CheckPlan(r, p).message();
    EXPECT_TRUE(seen.insert({p.dp, p.tp, p.cp, p.pp, p.vpp, p.zero, p.zero_shard, p.micro_batch, int(p.recompute),
                             p.sequence_parallel, int(p.offload), p.first_stage_layers, p.last_stage_layers})
                    .second)
        << "duplicate " << PlanSummary(p);
  };
  StatusOr<SearchResult> res = SearchPlans(r, o);
  ASSERT_TRUE(res.ok()) << res.status().ToString();
  EXPECT_EQ(n, res->candidates);
  EXPECT_GT(n, 100);
}

// The plans CheckPlan accepts among every degree up to `max_degree` (DP, TP,
// CP and PP whose product is at most `max_degree`), VPP up to `max_vpp`,
// micro-batch up to `max_mb` and shard group up to `max_degree` (those the
// search offers, SearchesShardGroup) (a superset of the space), each with
// the pipeline split split(pp, vpp) (none: no plan for that PP x VPP).
int64_t LegalPlans(const PlanRequest& r, int max_degree, int max_vpp, int64_t max_mb,
                   const std::function<std::optional<StageSplit>(int, int)>& split) {
  int64_t legal = 0;
  for (int dp = 1; dp <= max_degree; ++dp)
    for (int tp = 1; tp <= max_degree; ++tp)
      for (int cp = 1; cp <= max_degree; ++cp)
        for (int pp = 1; pp <= max_degree; ++pp) {
          if (dp * tp * cp * pp > max_degree) continue;
          for (int vpp = 1; vpp <= max_vpp; ++vpp) {
            const std::optional<StageSplit> stages = split(pp, vpp);
            if (!stages) continue;
            for (int zero = 0; zero <= 3; ++zero)
              for (int shard = 0; shard <= max_degree; ++shard) {
                if (shard > 0 && !SearchesShardGroup(shard, tp, r.cluster.node.gpus_per_node)) continue;
                for (int64_t mb = 1; mb <= max_mb; ++mb)
                  for (int rc = 0; rc < 3; rc += 2)  // fused core: selective == none, not searched
                    for (int sp = 0; sp < 2; ++sp)
                      for (int off = 0; off < 3; ++off)
                       for (int ep = 1; ep <= (r.model.moe() ? max_degree : 1); ++ep) {
                        Plan p;
                        p.dp = dp, p.tp = tp, p.cp = cp, p.pp = pp, p.vpp = vpp, p.zero = zero;
                        p.zero_shard = shard, p.micro_batch = mb, p.ep = ep;
                        p.grad_accum = r.training.global_batch / std::max<int64_t>(1, mb * dp);
                        p.recompute = Recompute(rc);
                        p.sequence_parallel = sp;
                        p.offload = Offload(off);
                        p.first_stage_layers = stages->first;
                        p.last_stage_layers = stages->last;
                        if (CheckPlan(r, p).ok()) ++legal;
                      }
              }
          }
        }
  return legal;
}

// Brute force over a superset of the space with CheckPlan as the oracle: the
// search enumerates exactly the legal plans, context parallel included (with
// the CP search policy off: SearchOptions::min_cp_rank_tokens).
TEST(SearchTest, EnumeratesExactlyTheLegalPlans) {
  PlanRequest r = CatalogRequest("gpt2-xl", "a100-40gb", 8, 32);  // 25 heads: TP in {1, 5, 25} only
  r.training.seq = 1024;                                   // its learned position table
  SearchOptions o;
  o.min_cp_rank_tokens = 0;  // every legal CP, as the oracle
  int64_t enumerated = 0, with_cp = 0;
  o.on_candidate = [&](const Plan& p, double, bool) { ++enumerated, with_cp += p.cp > 1; };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  const int64_t legal = LegalPlans(r, 8, 48, 32, [](int, int) { return std::optional<StageSplit>(StageSplit{}); });
  EXPECT_EQ(enumerated, legal);
  EXPECT_GT(with_cp, 0);
}

// The same with hybrid-sharding shard groups offered: on nodes of 2 GPUs the
// search offers shard groups of 2 and 4 GPUs (one and two whole nodes).
TEST(SearchTest, EnumeratesExactlyTheLegalPlansWithShardGroups) {
  PlanRequest r = CatalogRequest("gpt2-xl", "a100-40gb", 8, 32);
  r.training.seq = 1024;
  ASSERT_TRUE(SetGpusPerNode(&r.cluster, 2).ok());  // nodes of 2 GPUs, each its own NVLink domain
  SearchOptions o;
  o.min_cp_rank_tokens = 0;  // every legal CP, as the oracle
  int64_t enumerated = 0, hybrid = 0;
  o.on_candidate = [&](const Plan& p, double, bool) { ++enumerated, hybrid += p.zero_shard > 0; };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_EQ(enumerated, LegalPlans(r, 8, 48, 32, [](int, int) { return std::optional<StageSplit>(StageSplit{}); }));
  EXPECT_GT(hybrid, 0);
}

// The same with expert parallelism enumerated: an 8-layer, 8-expert MoE
// shape, every EP degree up to 8 in the oracle.
TEST(SearchTest, EnumeratesExactlyTheLegalMoePlans) {
  PlanRequest r = CatalogRequest("qwen3-30b-a3b", "h100-sxm", 8, 8);
  r.model.layers = 8;
  r.model.experts = 8;
  r.model.experts_per_token = 2;
  SearchOptions o;
  o.min_cp_rank_tokens = 0;  // every legal CP, as the oracle
  int64_t enumerated = 0, with_ep = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    ++enumerated;
    with_ep += p.ep > 1;
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  const int64_t legal = LegalPlans(r, 8, 8, 8, [](int, int) { return std::optional<StageSplit>(StageSplit{}); });
  EXPECT_EQ(enumerated, legal);
  EXPECT_GT(with_ep, 0);
}

// The CP search policy: at S 2048 only CP <= 2 is offered (S / CP >= 1024
// tokens per rank), a fixed --cp still goes below it.
TEST(SearchTest, ContextParallelIsSearchedOnlyWithLongEnoughRankSequences) {
  PlanRequest r = CatalogRequest("llama-2-7b", "h100-sxm", 16, 64);
  r.training.seq = 2048;
  SearchOptions o;
  int max_cp = 0;
  o.on_candidate = [&](const Plan& p, double, bool) { max_cp = std::max(max_cp, p.cp); };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_EQ(max_cp, 2);
  o.fixed.cp = 8;
  max_cp = 0;
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_EQ(max_cp, 8);
}

// The balanced split (planner/stage_split.h) by brute force over every stage
// size: minimise max(F + e, M, Lc + h), ties to the smaller F, then Lc;
// written with the fewest flags.
std::optional<StageSplit> BruteForceSplit(int64_t layers, int pp, int vpp, const StageEdgeWeights& w) {
  std::optional<std::tuple<double, int64_t, int64_t, int64_t>> best;  // cost, F, Lc, M
  for (int64_t f = vpp; f < layers; f += vpp) {
    for (int64_t l = vpp; f + l <= layers; l += vpp) {
      const int64_t rest = layers - f - l;
      int64_t m = 0;
      if (pp == 2) {
        if (rest != 0) continue;
      } else {
        if (rest % (pp - 2) != 0) continue;
        m = rest / (pp - 2);
        if (m < 1 || m % vpp != 0) continue;
      }
      const double cost = std::max({f + w.embedding, static_cast<double>(m), l + w.head});
      if (!best || std::make_tuple(cost, f, l) < std::make_tuple(std::get<0>(*best), std::get<1>(*best),
                                                                  std::get<2>(*best)))
        best = std::make_tuple(cost, f, l, m);
    }
  }
  if (!best) return std::nullopt;
  const auto [cost, f, l, m] = *best;
  if (pp == 2) return StageSplit{f != l ? static_cast<int>(f) : 0, 0};
  return StageSplit{f != m ? static_cast<int>(f) : 0, l != m ? static_cast<int>(l) : 0};
}

TEST(StageSplitTest, BalancedSplitEqualsBruteForce) {
  int compared = 0, uneven = 0;
  for (int64_t layers : {7, 10, 24, 26, 31, 48, 61, 70, 96}) {
    for (int pp = 2; pp <= 12; ++pp) {
      for (int vpp : {1, 2, 3, 4}) {
        for (double e : {0.0, 0.05, 0.4}) {
          for (double h : {0.0, 0.3, 0.7, 1.0, 1.46, 3.2}) {
            const StageEdgeWeights w{e, h};
            const std::optional<StageSplit> want = BruteForceSplit(layers, pp, vpp, w);
            const std::optional<StageSplit> got = BalancedStageSplit(layers, pp, vpp, w);
            const std::string where = fmt::format("L={} PP={} VPP={} e={} h={}", layers, pp, vpp, e, h);
            ASSERT_EQ(got.has_value(), want.has_value()) << where;
            if (!want) continue;
            EXPECT_EQ(got->first, want->first) << where;
            EXPECT_EQ(got->last, want->last) << where;
            Plan p;
            p.pp = pp, p.vpp = vpp, p.first_stage_layers = got->first, p.last_stage_layers = got->last;
            EXPECT_EQ(PipelineSplitRule(p, layers), nullptr) << where;
            uneven += p.uneven_stages();
            ++compared;
          }
        }
      }
    }
  }
  EXPECT_GT(compared, 3000);
  EXPECT_GT(uneven, 1000);
}

TEST(StageSplitTest, Llama405BOnPP16AndBloomOnPP12) {
  // e ~ 0, h ~ 0.7 (405B) and ~ 1.5+ (BLOOM's 250,880 vocabulary).
  const std::optional<StageSplit> l405 = BalancedStageSplit(126, 16, 1, {0.01, 0.7});
  ASSERT_TRUE(l405.has_value());
  EXPECT_EQ(l405->first, 7);  // 7 | 8 x 14 | 7
  EXPECT_EQ(l405->last, 7);
  const std::optional<StageSplit> bloom = BalancedStageSplit(70, 12, 1, {0.01, 1.6});
  ASSERT_TRUE(bloom.has_value());
  EXPECT_EQ(bloom->first, 0);  // 6 x 11 | 4
  EXPECT_EQ(bloom->last, 4);
  EXPECT_FALSE(BalancedStageSplit(70, 71, 1, {}).has_value());  // fewer layers than stages
}

// The search with uneven stages: a 26-layer model on 12 GPUs, where PP 3, 4,
// 6 and 12 do not divide the layers. Every legal plan whose split is the one
// the search offers for its (PP, VPP) (even when PP x VPP divides L; else, PP
// not dividing L, the brute-force balanced split) is enumerated, exactly once.
TEST(SearchTest, EnumeratesExactlyTheLegalPlansWithUnevenStages) {
  PlanRequest r = CatalogRequest("llama-2-7b", "h100-sxm", 12, 24);
  r.model.layers = 26;
  r.model.name = "llama-26l";
  const StageEdgeWeights w = EdgeWeights(r, AttentionImpl::kFused);
  auto offered = [&](int pp, int vpp) -> std::optional<StageSplit> {
    if (r.model.layers % pp == 0)
      return r.model.layers % (pp * vpp) == 0 ? std::optional<StageSplit>(StageSplit{}) : std::nullopt;
    return BruteForceSplit(r.model.layers, pp, vpp, w);
  };
  SearchOptions o;
  o.min_cp_rank_tokens = 0;  // every legal CP, as the oracle
  int64_t enumerated = 0, uneven = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    ++enumerated;
    uneven += p.uneven_stages();
    const std::optional<StageSplit> want = offered(p.pp, p.vpp);
    ASSERT_TRUE(want.has_value()) << PlanSummary(p);
    EXPECT_EQ(p.first_stage_layers, want->first) << PlanSummary(p);
    EXPECT_EQ(p.last_stage_layers, want->last) << PlanSummary(p);
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  const int64_t legal = LegalPlans(r, 12, 13, 24, offered);
  EXPECT_EQ(enumerated, legal);
  EXPECT_GT(uneven, 100);
}

TEST(SearchTest, FixedSplitIsHonouredWithEveryVppThatDividesIt) {
  PlanRequest r = CatalogRequest("llama-3.1-405b", "h100-sxm", 1024, 1024);
  SearchOptions o;
  o.fixed.tp = 8;
  o.fixed.pp = 16;
  o.fixed.first_stage_layers = 6;
  o.fixed.last_stage_layers = 8;  // 6 | 8 x 14 | 8 with VPP 1 or 2
  o.top_k = 1;
  std::set<int> vpps;
  o.on_candidate = [&](const Plan& p, double, bool) {
    EXPECT_EQ(p.first_stage_layers, 6);
    EXPECT_EQ(p.last_stage_layers, 8);
    vpps.insert(p.vpp);
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_EQ(vpps, (std::set<int>{1, 2}));
  // A fixed split Megatron refuses is refused by its rule's name.
  o.fixed.last_stage_layers = 5;  // 115 over 14 middle stages
  StatusOr<SearchResult> bad = SearchPlans(r, o);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("middle%stages"), std::string::npos) << bad.status().message();
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

// The tp-pp-dp placement is searched where the framework runs it and it
// differs from the default (PP > 1, DP > 1, no CP or EP), never for p3d's
// executor, and a fixed one the framework cannot run names its rule.
TEST(SearchTest, PlacementIsSearchedWhereTheFrameworkRunsIt) {
  PlanRequest r = CatalogRequest("llama-2-7b", "h100-sxm", 16, 64);
  SearchOptions o;
  int64_t pp_first = 0;
  o.on_candidate = [&](const Plan& p, double, bool) {
    if (p.placement != Placement::kPpBeforeDp) return;
    ++pp_first;
    EXPECT_TRUE(p.pp > 1 && p.dp > 1 && p.cp == 1 && p.ep == 1) << PlanSummary(p);
    EXPECT_TRUE(CheckPlan(r, p).ok()) << PlanSummary(p) << ": " << CheckPlan(r, p).message();
  };
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_EQ(pp_first, 0);  // p3d: limit no-tp-pp-dp
  SetFramework(LoadFrameworkProfile("megatron-core").value(), &r);
  ASSERT_TRUE(SearchPlans(r, o).ok());
  EXPECT_GT(pp_first, 0);
  PlanRequest p3d = CatalogRequest("llama-2-7b", "h100-sxm", 16, 64);
  o.on_candidate = nullptr;
  o.fixed.placement = Placement::kPpBeforeDp;
  o.fixed.pp = 2;
  StatusOr<SearchResult> refused = SearchPlans(p3d, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("no-tp-pp-dp"), std::string::npos) << refused.status().message();
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

// The search evaluates memory through PeakMemoryCache (stage shapes and
// per-micro-batch terms kept across plans) and stops a plan at its first
// stage over memory once it needs no exact peak: every candidate's figure
// must equal PeakStageMemory's for the plan alone, and the search without an
// on_candidate observer (which takes the early stop) must return the same.
TEST(SearchTest, KeptMemoryTermsGiveEachPlanItsOwnFigure) {
  std::vector<PlanRequest> requests = {
      CatalogRequest("llama-2-70b", "h100-sxm", 64),       // dense, uneven splits, CP, HSDP, offload
      CatalogRequest("mixtral-8x7b", "h100-sxm", 32, 256),  // MoE: EP searched
      CatalogRequest("gpt-oss-20b", "h100-sxm", 16, 128),   // windowed attention, MoE
      CatalogRequest("deepseek-v3", "h100-sxm", 256, 1024),  // leading dense layers, MLA
  };
  requests[1].training.fp8 = Fp8Recipe::kDelayed;
  SetFramework(LoadFrameworkProfile("megatron-core").value(), &requests[2]);
  for (PlanRequest& r : requests) {
    SCOPED_TRACE(r.model.name);
    SearchOptions o;
    int64_t checked = 0;
    o.on_candidate = [&](const Plan& p, double peak, bool fits) {
      double host = 0;
      const MemoryBreakdown alone = PeakStageMemory(r.model, r.training, r.cluster, p, nullptr, &host);
      ASSERT_EQ(peak, alone.total()) << PlanSummary(p);
      ASSERT_EQ(fits, FitsInMemory(alone, r.cluster.gpu) && FitsInHostMemory(host, r.cluster.node))
          << PlanSummary(p);
      ++checked;
    };
    StatusOr<SearchResult> observed = SearchPlans(r, o);
    ASSERT_TRUE(observed.ok()) << observed.status().ToString();
    EXPECT_EQ(checked, observed->candidates);
    EXPECT_GT(observed->fitting, 0);
    o.on_candidate = nullptr;
    StatusOr<SearchResult> plain = SearchPlans(r, o);
    ASSERT_TRUE(plain.ok()) << plain.status().ToString();
    EXPECT_EQ(plain->candidates, observed->candidates);
    EXPECT_EQ(plain->fitting, observed->fitting);
    EXPECT_EQ(plain->simulated, observed->simulated);
    EXPECT_EQ(plain->rejected_by_rule, observed->rejected_by_rule);
    ASSERT_EQ(plain->plans.size(), observed->plans.size());
    for (size_t i = 0; i < plain->plans.size(); ++i) {
      EXPECT_EQ(PlanSummary(plain->plans[i].plan), PlanSummary(observed->plans[i].plan));
      EXPECT_EQ(plain->plans[i].time.step_s, observed->plans[i].time.step_s);
      EXPECT_EQ(plain->plans[i].memory.peak().total(), observed->plans[i].memory.peak().total());
    }
  }
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
