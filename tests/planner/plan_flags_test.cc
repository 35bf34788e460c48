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
  EXPECT_FALSE(o->dp || o->tp || o->pp || o->vpp || o->zero || o->micro_batch);
  EXPECT_FALSE(o->first_stage_layers || o->last_stage_layers);
  EXPECT_TRUE(o->recompute.empty());
  EXPECT_TRUE(o->offload.empty());
}

TEST(PlanFlagsTest, SpFlagsSetTheDimensionAndExcludeEachOther) {
  EXPECT_EQ(*Parse({"--sp"})->sequence_parallel, true);
  EXPECT_EQ(*Parse({"--no-sp"})->sequence_parallel, false);
  EXPECT_FALSE(Parse({"--sp", "--no-sp"}).ok());
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
  // as uneven stages) adds 528.
  EXPECT_EQ(cli, 13760);
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

}  // namespace
}  // namespace p3d
