// p3d-plan's flags as a user types them (planner/plan_flags.h): an absent
// flag must leave its dimension to the search. CLI11 2.1 set an absent
// optional<bool> --sp flag to false, and the CLI silently searched 11,052 of
// the 19,848 legal plans of the main job (issue 18).
#include "planner/plan_flags.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <sstream>
#include <vector>

#include "tests/planner/catalog_request.h"
#include "tests/planner/run_cli.h"
#include "planner/search.h"

namespace p3d {
namespace {

StatusOr<PlanCliOptions> Parse(std::vector<const char*> args) {
  args.insert(args.begin(), "p3d-plan");
  return ParsePlanFlags(static_cast<int>(args.size()), args.data());
}

TEST(PlanFlagsTest, AbsentFlagsLeaveEveryDimensionToTheSearch) {
  auto o = Parse({"--model", "70B", "--gpus", "64", "--mem", "80"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_FALSE(o->sequence_parallel.has_value());
  EXPECT_FALSE(o->dp || o->tp || o->cp || o->pp || o->vpp || o->zero || o->zero_shard || o->micro_batch);
  EXPECT_FALSE(o->first_stage_layers || o->last_stage_layers);
  EXPECT_TRUE(o->recompute.empty());
  EXPECT_TRUE(o->offload.empty());
}

TEST(PlanFlagsTest, SpFlagsSetTheDimensionAndExcludeEachOther) {
  EXPECT_EQ(*Parse({"--sp"})->sequence_parallel, true);
  EXPECT_EQ(*Parse({"--no-sp"})->sequence_parallel, false);
  EXPECT_FALSE(Parse({"--sp", "--no-sp"}).ok());
}

TEST(PlanFlagsTest, EpAllToAllOverlapIsOffUnlessAskedAndRefusedWhereMegatronRefusesIt) {
  EXPECT_FALSE(Parse({})->ep_a2a_overlap);
  auto o = Parse({"--model", "qwen3-30b-a3b", "--gpus", "8", "--gpu", "h100-sxm", "--framework", "megatron-core",
                  "--ep", "8", "--ep-a2a-overlap", "--recompute", "full"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->ep_a2a_overlap);
  const CliResult r = RunCli(*o);
  EXPECT_EQ(r.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status.message().find("--ep-a2a-overlap with --recompute full"), std::string::npos)
      << r.status.message();
  auto plain = Parse({"--model", "qwen3-30b-a3b", "--gpus", "16", "--gpu", "h100-sxm", "--framework",
                      "megatron-core", "--ep", "8", "--pp", "2", "--vpp", "1", "--ep-a2a-overlap"});
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  const CliResult p = RunCli(*plain);
  EXPECT_EQ(p.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(p.status.message().find("--ep-a2a-overlap with --pp > 1 and --vpp 1"), std::string::npos)
      << p.status.message();
}

TEST(PlanFlagsTest, DeepEpIsOffUnlessAskedAndRefusedWithoutExpertParallelism) {
  EXPECT_FALSE(Parse({})->ep_deepep);
  auto o = Parse({"--model", "qwen3-30b-a3b", "--gpus", "8", "--gpu", "h100-sxm", "--framework", "megatron-core",
                  "--ep", "1", "--ep-deepep"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_TRUE(o->ep_deepep);
  const CliResult r = RunCli(*o);
  EXPECT_EQ(r.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status.message().find("--ep-deepep with --ep 1"), std::string::npos) << r.status.message();
}

// The CLI's default search covers exactly the library's default search space.
TEST(PlanFlagsTest, CliSearchesTheLibrarysWholeSpace) {
  auto o = Parse({"--model", "70B", "--gpus", "64", "--mem", "80", "--json", "--top", "1"});
  ASSERT_TRUE(o.ok());
  std::ostringstream out, err;
  ASSERT_TRUE(RunPlanCli(*o, out, err).ok());
  const int64_t cli = nlohmann::json::parse(out.str())["search"]["candidates"].get<int64_t>();
  auto lib = SearchPlans(CatalogRequest("llama-2-70b", "h100-sxm", 64), SearchOptions{});
  ASSERT_TRUE(lib.ok());
  EXPECT_EQ(cli, lib->candidates);
  // SP searched; with the fused core selective == none is not listed twice; PP 32 (80 layers
  // as uneven stages) adds 528: 13,760 plans without CP and hybrid sharding. Hybrid sharding
  // (ZeRO 1-3 over shard groups of 1, 2 or 4 whole nodes) and context parallel (CP 2 only:
  // S / CP >= 1024 tokens per rank, SearchOptions::min_cp_rank_tokens) make 53,342.
  EXPECT_EQ(cli, 53342);
  SearchOptions classic;
  classic.fixed.cp = 1;
  classic.fixed.zero_shard = 0;
  EXPECT_EQ(SearchPlans(CatalogRequest("llama-2-70b", "h100-sxm", 64), classic)->candidates, 13760);
}

// --first-stage-layers / --last-stage-layers fix Megatron's uneven split; one
// alone fixes the other to "not set" (a middle stage), as in Megatron.
TEST(PlanFlagsTest, StageLayerFlagsFixTheSplit) {
  auto o = Parse({"--model", "405B", "--gpus", "1024", "--gpu", "h100-sxm", "--tp", "8", "--pp", "16",
                  "--first-stage-layers", "6", "--json", "--top", "1"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(*o->first_stage_layers, 6);
  EXPECT_FALSE(o->last_stage_layers.has_value());
  std::ostringstream out, err;
  ASSERT_TRUE(RunPlanCli(*o, out, err).ok()) << err.str();
  const nlohmann::json plan = nlohmann::json::parse(out.str())["plans"][0];
  EXPECT_EQ(plan["first_stage_layers"], 6);  // 6 | 8 x 15: the last stage is a middle one
  EXPECT_EQ(plan["last_stage_layers"], 0);
  EXPECT_EQ(plan["stages"][0]["layers"], 6);
  EXPECT_EQ(plan["stages"][15]["layers"], 8);
  o->first_stage_layers = 0;
  std::ostringstream out2, err2;
  Status zero = RunPlanCli(*o, out2, err2);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.message().find("--first-stage-layers"), std::string::npos) << zero.message();
}

TEST(PlanFlagsTest, EmptyStringsAreErrorsNotAbsentFlags) {
  for (const char* flag : {"--report", "--save-plan", "--export", "--model", "--gpu", "--profile", "--recompute"}) {
    auto o = Parse({"--model", "7B", "--gpus", "8", "--mem", "80", flag, ""});
    ASSERT_FALSE(o.ok()) << flag;
    EXPECT_NE(o.status().message().find(flag), std::string::npos) << o.status().message();
  }
}

TEST(PlanFlagsTest, JsonAndExportExcludeEachOther) {
  EXPECT_FALSE(Parse({"--json", "--export", "megatron"}).ok());
}

TEST(PlanFlagsTest, MalformedValuesAreErrors) {
  EXPECT_FALSE(Parse({"--gpus", "eight"}).ok());
  EXPECT_FALSE(Parse({"--no-such-flag"}).ok());
}

// --cp and --zero-shard fix context parallel and the HSDP shard group; bad
// values are refused naming the flag or the rule.
TEST(PlanFlagsTest, CpAndZeroShardFlagsFixTheirDimensions) {
  auto o = Parse({"--model", "70B", "--gpus", "64", "--gpu", "h100-sxm", "--seq", "16384", "--global-batch", "64",
                  "--cp", "4", "--zero-shard", "2", "--zero", "1", "--json", "--top", "1"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(*o->cp, 4);
  EXPECT_EQ(*o->zero_shard, 2);
  std::ostringstream out, err;
  ASSERT_TRUE(RunPlanCli(*o, out, err).ok()) << err.str();
  const nlohmann::json plan = nlohmann::json::parse(out.str())["plans"][0];
  EXPECT_EQ(plan["cp"], 4);
  EXPECT_EQ(plan["zero_shard"], 2);
  EXPECT_GE(plan["time"]["cp_comm_s"].get<double>(), 0.0);
  auto refused = [&](std::vector<const char*> extra, const std::string& needle) {
    std::vector<const char*> args = {"--model", "70B", "--gpus", "64", "--gpu", "h100-sxm", "--top", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto bad = Parse(args);
    ASSERT_TRUE(bad.ok()) << bad.status().ToString();
    std::ostringstream o2, e2;
    const Status s = RunPlanCli(*bad, o2, e2);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.message();
  };
  refused({"--cp", "0"}, "--cp must be in 1..2^24");
  refused({"--zero-shard", "-2"}, "--zero-shard must be 0");
  refused({"--cp", "3"}, "gpus=dp*tp*cp*pp");                          // 3 does not divide 64 GPUs
  refused({"--cp", "4", "--seq", "2044"}, "seq%(2*cp)");                // 2044 % 8 != 0
  refused({"--zero-shard", "3", "--zero", "1"}, "zero_shard|dp*cp");   // no DP x CP of 3s
  refused({"--zero-shard", "8", "--zero", "0"}, "zero_shard=>zero>=1");
  refused({"--cp", "2", "--framework", "deepspeed"}, "rule no-cp");    // Ulysses, not the ring
  EXPECT_FALSE(Parse({"--cp", "two"}).ok());
}

}  // namespace
}  // namespace p3d
