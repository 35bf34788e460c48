// FP8 through p3d-plan (issue 16): --fp8 is validated, refused where the GPU
// or the framework cannot run the recipe (naming the rule), predicted and
// explained, and carried by --json, --save-plan (read back) and the Megatron
// export (--fp8-format / --fp8-recipe, split back into flags).
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "simulator/saved_plan.h"
#include "tests/planner/run_cli.h"

namespace p3d {
namespace {

PlanCliOptions Llama8b(const char* fp8, const char* framework = "megatron-core", const char* gpu = "h100-sxm") {
  PlanCliOptions o;
  o.model = "llama-3-8b";
  o.gpus = 8;
  o.gpu = gpu;
  o.framework = framework;
  o.fp8 = fp8;
  o.top = 3;
  return o;
}

TEST(Fp8Cli, UnknownRecipeNamesTheFlagAndTheChoices) {
  CliResult r = RunCli(Llama8b("e4m3"));
  EXPECT_EQ(r.status.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status.message().find("--fp8 must be one of off|delayed|tensorwise|blockwise|mxfp8"), std::string::npos)
      << r.status.message();
}

TEST(Fp8Cli, FrameworkWithoutTheRecipeIsRefusedNamingTheRule) {
  CliResult r = RunCli(Llama8b("delayed", "deepspeed"));
  EXPECT_EQ(r.status.code(), Status::Code::kInfeasible);
  EXPECT_NE(r.status.message().find("deepspeed: rule fp8-recipe"), std::string::npos) << r.status.message();
  r = RunCli(Llama8b("delayed", "torchtitan"));
  EXPECT_EQ(r.status.code(), Status::Code::kInfeasible);
  EXPECT_NE(r.status.message().find("FP8 recipes it runs: tensorwise, mxfp8"), std::string::npos)
      << r.status.message();
  EXPECT_TRUE(RunCli(Llama8b("tensorwise", "torchtitan")).status.ok());
}

TEST(Fp8Cli, GpuWithoutFp8TensorCoresIsRefusedNamingTheRule) {
  CliResult r = RunCli(Llama8b("delayed", "megatron-core", "a100-80gb"));
  ASSERT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("fp8=>fp8_tensor_cores"), std::string::npos) << r.status.message();
  r = RunCli(Llama8b("mxfp8", "megatron-core", "h100-sxm"));
  ASSERT_FALSE(r.status.ok());
  EXPECT_NE(r.status.message().find("mxfp8=>block_scaled_tensor_cores"), std::string::npos) << r.status.message();
  EXPECT_TRUE(RunCli(Llama8b("mxfp8", "megatron-core", "b200")).status.ok());
}

TEST(Fp8Cli, P3dPredictsButMarksItNotRun) {
  PlanCliOptions o = Llama8b("tensorwise", "p3d");
  o.json = true;
  CliResult r = RunCli(o);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["training"]["fp8"], "tensorwise");
  EXPECT_EQ(j["plans"][0]["runs"], false);
  EXPECT_EQ(j["plans"][0]["runs_rule"], "fp8-recipe");
}

TEST(Fp8Cli, ExplainShowsTheFp8Terms) {
  PlanCliOptions o = Llama8b("delayed");
  o.explain = true;
  CliResult r = RunCli(o);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  for (const char* term : {"fp8      recipe delayed", "layer.fp8.gemms.forward", "layer.fp8.cast_bytes.backward",
                           "weights.fp8_copies", "activations.per_layer.fp8", "tail.fp8_weight_cast"})
    EXPECT_NE(r.out.find(term), std::string::npos) << term;
}

TEST(Fp8Cli, SavedPlanKeepsTheRecipe) {
  const std::string path = ::testing::TempDir() + "/fp8_plan.json";
  PlanCliOptions o = Llama8b("blockwise");
  o.save_plan = path;
  ASSERT_TRUE(RunCli(o).status.ok());
  StatusOr<SavedPlan> saved = LoadSavedPlan(path);
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_EQ(saved->request.training.fp8, Fp8Recipe::kBlockwise);
  EXPECT_EQ(saved->request.cluster.gpu.fp8_peak_flops, 1979e12);
  std::remove(path.c_str());
}

// "--flag value \\\n--switch ..." -> {flag: value}.
std::map<std::string, std::string> Flags(const std::string& text) {
  std::istringstream in(text);
  std::map<std::string, std::string> a;
  std::string token, last;
  while (in >> token) {
    if (token == "\\") continue;
    if (token.rfind("--", 0) == 0) a[last = token] = "";
    else a[last] = token;
  }
  return a;
}

TEST(Fp8Cli, MegatronExportRoundTripsTheRecipe) {
  for (const char* recipe : {"delayed", "tensorwise", "blockwise"}) {
    PlanCliOptions o = Llama8b(recipe, "megatron-core");
    o.export_format = "megatron";
    CliResult r = RunCli(o);
    ASSERT_TRUE(r.status.ok()) << recipe << ": " << r.status.ToString();
    std::map<std::string, std::string> a = Flags(r.out);
    EXPECT_EQ(a["--fp8-format"], "hybrid") << recipe;
    Fp8Recipe back = Fp8Recipe::kOff;
    ASSERT_TRUE(ParseFp8Recipe(a["--fp8-recipe"], &back)) << a["--fp8-recipe"];
    EXPECT_EQ(Fp8RecipeName(back), std::string(recipe));
  }
  PlanCliOptions off = Llama8b("off", "megatron-core");
  off.export_format = "megatron";
  CliResult r = RunCli(off);
  ASSERT_TRUE(r.status.ok());
  EXPECT_EQ(Flags(r.out).count("--fp8-format"), 0u);
  EXPECT_EQ(Flags(r.out).count("--fp8-recipe"), 0u);
}

}  // namespace
}  // namespace p3d
