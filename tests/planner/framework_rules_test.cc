// The search honours the framework (issue 15): it enumerates only what the
// chosen framework runs (its profile's "limit" rules, common/framework.h),
// lists what it does not run yet with the rule in the `runs` column ("gap"
// rules: p3d's executor), and refuses a fixed dimension the framework cannot
// run, naming the rule and its source.
#include <gtest/gtest.h>

#include "models/zoo.h"
#include "planner/search.h"

namespace p3d {
namespace {

PlanRequest Llama70bOn(int gpus, const std::string& framework) {
  PlanRequest r;
  r.model = ZooModel("llama-2-70b").value();
  r.cluster = CatalogCluster("h100-sxm").value();
  r.cluster.num_gpus = gpus;
  SetFramework(LoadFrameworkProfile(framework).value(), &r);
  r.training.global_batch = 256;
  r.training.seq = 4096;
  return r;
}

TEST(FrameworkRules, DeepSpeedRefusesAnInterleavedPlanNamingTheRule) {
  SearchOptions o;
  o.fixed.pp = 4;
  o.fixed.vpp = 2;
  StatusOr<SearchResult> s = SearchPlans(Llama70bOn(64, "deepspeed"), o);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kInfeasible);
  EXPECT_NE(s.status().message().find("deepspeed: rule vpp=1"), std::string::npos) << s.status().message();
  EXPECT_NE(s.status().message().find("TrainSchedule"), std::string::npos) << s.status().message();
  // The same request is legal for Megatron-Core.
  EXPECT_TRUE(SearchPlans(Llama70bOn(64, "megatron-core"), o).ok());
}

// No candidate of any framework's search breaks one of its limits, and each
// limit did eliminate layouts somewhere (it is not a rule that never fires).
TEST(FrameworkRules, EveryFrameworkEnumeratesOnlyWhatItRuns) {
  for (const std::string& name : BuiltinFrameworkNames()) {
    SCOPED_TRACE(name);
    const PlanRequest request = Llama70bOn(64, name);
    const Framework& fw = request.training.framework;
    SearchOptions o;
    o.top_k = 3;
    int64_t broken = 0;
    o.on_candidate = [&](const Plan& p, double, bool) {
      if (FrameworkRuleBroken(fw, RuleKind::kLimit, p)) ++broken;
    };
    StatusOr<SearchResult> s = SearchPlans(request, o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(broken, 0);
    for (int i = 0; i < kSupportRuleCount; ++i) {
      const SupportRule rule = static_cast<SupportRule>(i);
      if (!(fw.limits & RuleBit(rule))) continue;
      bool counted = false;
      for (const auto& [id, count] : s->rejected_by_rule) counted |= id == SupportRuleId(rule) && count > 0;
      // A rule may fire on layouts an earlier rule already removed; the
      // search counts the first. At least the limits the 70B search meets:
      if (rule == SupportRule::kInterleaved || rule == SupportRule::kZeroWithPp || rule == SupportRule::kZero1)
        EXPECT_TRUE(counted) << SupportRuleId(rule);
    }
  }
}

TEST(FrameworkRules, LimitsOfEachProfileShapeItsSearch) {
  auto plans = [](const std::string& framework) {
    std::vector<Plan> all;
    SearchOptions o;
    o.on_candidate = [&](const Plan& p, double, bool) { all.push_back(p); };
    EXPECT_TRUE(SearchPlans(Llama70bOn(64, framework), o).ok());
    return all;
  };
  for (const Plan& p : plans("deepspeed")) {
    EXPECT_EQ(p.vpp, 1);
    EXPECT_TRUE(p.pp == 1 || p.zero <= 1) << PlanSummary(p);
  }
  for (const Plan& p : plans("torchtitan")) {
    EXPECT_TRUE(p.zero == 0 || p.zero == 3) << PlanSummary(p);
    EXPECT_TRUE(p.tp == 1 || p.sequence_parallel) << PlanSummary(p);
    EXPECT_TRUE(p.zero != 0 || p.dp == 1 || p.tp * p.pp == 1) << PlanSummary(p);
  }
  for (const Plan& p : plans("megatron-core")) EXPECT_TRUE(p.pp == 1 || p.zero <= 1) << PlanSummary(p);
  for (const Plan& p : plans("megatron-lm-2021")) {
    EXPECT_EQ(p.zero, 0);
    EXPECT_FALSE(p.sequence_parallel);
    EXPECT_NE(p.recompute, Recompute::kSelective);
  }
}

// p3d's rules are gaps: the plans are listed, their runs column names the
// rule, and --runnable drops them.
TEST(FrameworkRules, P3dGapsAreListedAndMarkedNotRemoved) {
  PlanRequest request = Llama70bOn(64, "p3d");
  SearchOptions o;
  o.fixed.tp = 8;
  o.fixed.zero = 3;
  o.top_k = 5;
  StatusOr<SearchResult> listed = SearchPlans(request, o);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_FALSE(listed->plans.empty());
  for (const EvaluatedPlan& e : listed->plans) {
    ASSERT_NE(e.runs_rule, nullptr);
    EXPECT_STREQ(e.runs_rule, "zero-with-tp/pp");
  }
  o.runnable_only = true;
  StatusOr<SearchResult> runnable = SearchPlans(request, o);
  ASSERT_FALSE(runnable.ok());
  EXPECT_NE(runnable.status().message().find("zero-with-tp/pp"), std::string::npos);
}

// The embedding/loss split accounting (rule account-split): the search offers
// it where the framework runs it and no other split fills the chunks
// (megatron-core: Llama-3.1-405B's 126 layers on PP 8 x VPP 8), never where
// the framework cannot (megatron-lm-2022 has no such flag), and a fixed one
// there is refused naming the rule.
TEST(FrameworkRules, AccountedSplitWhereTheFrameworkRunsIt) {
  auto request = [](const std::string& framework) {
    PlanRequest r = Llama70bOn(512, framework);
    r.model = ZooModel("llama-3.1-405b").value();
    r.training.seq = 8192;
    return r;
  };
  SearchOptions o;
  o.fixed.tp = 8;
  o.fixed.pp = 8;
  o.fixed.vpp = 8;
  o.top_k = 1;
  StatusOr<SearchResult> mcore = SearchPlans(request("megatron-core"), o);
  ASSERT_TRUE(mcore.ok()) << mcore.status().ToString();
  const Plan& best = mcore->plans.at(0).plan;
  EXPECT_TRUE(best.account_for_embedding && best.account_for_loss) << PlanSummary(best);
  EXPECT_EQ(mcore->plans.at(0).runs_rule, nullptr);
  EXPECT_FALSE(Breaks(SupportRule::kAccountSplit, Plan{}));
  EXPECT_TRUE(Breaks(SupportRule::kAccountSplit, best));
  StatusOr<SearchResult> old = SearchPlans(request("megatron-lm-2022"), o);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("layers%pp"), std::string::npos) << old.status().message();
  o.fixed.account_for_embedding = o.fixed.account_for_loss = true;
  old = SearchPlans(request("megatron-lm-2022"), o);
  ASSERT_FALSE(old.ok());
  EXPECT_NE(old.status().message().find("rule account-split"), std::string::npos)
      << old.status().message();
  auto limits = [](const char* name) { return LoadFrameworkProfile(name).value().framework.limits; };
  for (const char* name : {"megatron-core", "nemo", "torchtitan"})
    EXPECT_FALSE(limits(name) & RuleBit(SupportRule::kAccountSplit)) << name;
  for (const char* name : {"deepspeed", "megatron-deepspeed", "megatron-lm-2021", "megatron-lm-2022"})
    EXPECT_TRUE(limits(name) & RuleBit(SupportRule::kAccountSplit)) << name;
  EXPECT_TRUE(LoadFrameworkProfile("p3d").value().framework.gaps & RuleBit(SupportRule::kAccountSplit));
}

}  // namespace
}  // namespace p3d
