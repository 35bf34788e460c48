// p3d-plan end to end through RunPlanCli: the main job, the JSON contract,
// and bad input answered with a message naming the field or rule.
#include "planner/plan_cli.h"
#include "tests/planner/run_cli.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace p3d {
namespace {

PlanCliOptions MainJob() {
  PlanCliOptions o;
  o.model = "70B";
  o.gpus = 64;
  o.mem_gb = 80;
  return o;
}

TEST(PlanCliTest, MainJobPrintsRankedTable) {
  CliResult r = RunCli(MainJob());
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_NE(r.out.find("llama-2-70b"), std::string::npos);
  EXPECT_NE(r.out.find("h100-sxm"), std::string::npos);
  EXPECT_NE(r.err.find("picked GPU 'h100-sxm'"), std::string::npos);  // says which GPU --mem chose
  EXPECT_NE(r.out.find("  1 "), std::string::npos);
  EXPECT_NE(r.out.find(" 10 "), std::string::npos);
}

// Issue 15's acceptance: layer counts PP does not divide are planned with
// Megatron's uneven stages, predicted, explained and saved.
struct UnevenCase {
  const char* model;
  int64_t gpus;
  const char* gpu;
  int tp, pp;
  int64_t layers;
  int first, last;          // the balanced split (planner/stage_split.h)
  const char* per_stage;    // StageLayersSummary
};

TEST(PlanCliTest, UnevenStagesAreAcceptedAndPredicted) {
  const UnevenCase cases[] = {{"llama-3.1-405b", 16384, "h100-sxm", 8, 16, 126, 7, 7, "7,8x14,7"},
                              {"bloom-176b", 384, "a100-80gb", 4, 12, 70, 0, 4, "6x11,4"}};
  for (const UnevenCase& c : cases) {
    PlanCliOptions o;
    o.model = c.model;
    o.gpus = c.gpus;
    o.gpu = c.gpu;
    o.tp = c.tp;
    o.cp = 1;  // the balanced split of the even-VPP plans (CP lets VPP 2 plans fit and win)
    o.pp = c.pp;
    o.top = 3;
    o.explain = true;
    CliResult table = RunCli(o);
    ASSERT_TRUE(table.status.ok()) << c.model << ": " << table.status.ToString();
    EXPECT_NE(table.out.find(std::string("#1 ") + c.per_stage), std::string::npos) << table.out;
    EXPECT_NE(table.out.find(std::string("layers per stage: ") + c.per_stage), std::string::npos) << table.out;
    o.explain = false;
    o.json = true;
    CliResult r = RunCli(o);
    ASSERT_TRUE(r.status.ok()) << r.status.ToString();
    const nlohmann::json best = nlohmann::json::parse(r.out)["plans"][0];
    EXPECT_TRUE(best["fits"].get<bool>()) << c.model;
    EXPECT_GT(best["time"]["step_s"].get<double>(), 0) << c.model;
    EXPECT_EQ(best["pp"], c.pp);
    EXPECT_EQ(best["first_stage_layers"], c.first) << c.model;
    EXPECT_EQ(best["last_stage_layers"], c.last) << c.model;
    EXPECT_FALSE(best["runs"].get<bool>()) << c.model;  // p3d-run splits evenly (rule uneven-stages)
    int64_t layers = 0;
    for (const auto& s : best["stages"]) layers += s["layers"].get<int64_t>();
    EXPECT_EQ(layers, c.layers) << c.model;
  }
}

// The JSON document carries every key of docs/json-schema.md, in bytes and seconds.
TEST(PlanCliTest, JsonFollowsSchema) {
  PlanCliOptions o = MainJob();
  o.json = true;
  o.top = 3;
  CliResult r = RunCli(o);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schema"], "p3d-plan/1");
  EXPECT_EQ(j["model"]["parameters"].get<int64_t>(), 68976648192);
  EXPECT_EQ(j["cluster"]["num_gpus"], 64);
  EXPECT_GT(j["search"]["candidates"].get<int64_t>(), 0);
  EXPECT_GE(j["search"]["seconds"].get<double>(), 0);
  ASSERT_EQ(j["plans"].size(), 3u);
  for (const auto& p : j["plans"]) {
    for (const char* k : {"dp", "tp", "pp", "vpp", "zero", "micro_batch", "grad_accum", "global_batch", "seq",
                          "recompute", "sequence_parallel", "fits", "memory", "time", "tokens_per_s",
                          "tflops_per_gpu", "mfu"})
      EXPECT_TRUE(p.contains(k)) << k;
    EXPECT_EQ(p["dp"].get<int>() * p["tp"].get<int>() * p["pp"].get<int>(), 64);
    EXPECT_EQ(p["micro_batch"].get<int64_t>() * p["grad_accum"].get<int64_t>() * p["dp"].get<int64_t>(), 512);
    double sum = 0;
    for (const char* k : {"weights", "gradients", "optimizer", "activations", "buffers", "runtime"})
      sum += p["memory"][k].get<double>();
    EXPECT_NEAR(sum, p["memory"]["total"].get<double>(), 1.0);
    EXPECT_LE(p["memory"]["total"].get<double>(), j["cluster"]["memory_bytes_per_gpu"].get<double>());
    double parts = 0;
    for (const char* k : {"compute_s", "tp_comm_s", "pp_comm_s", "dp_comm_s", "bubble_s", "optimizer_s", "offload_s", "other_s"})
      parts += p["time"][k].get<double>();
    EXPECT_NEAR(parts, p["time"]["step_s"].get<double>(), 1e-9 * parts);
    EXPECT_GT(p["mfu"].get<double>(), 0);
    EXPECT_LT(p["mfu"].get<double>(), 1);
  }
}

void ExpectError(const PlanCliOptions& o, const std::string& needle) {
  CliResult r = RunCli(o);
  ASSERT_FALSE(r.status.ok()) << "expected an error mentioning " << needle;
  EXPECT_NE(r.status.message().find(needle), std::string::npos) << r.status.message();
}

TEST(PlanCliTest, BadInputNamesTheFieldOrRule) {
  PlanCliOptions o = MainJob();
  o.model = "no-such-model";
  ExpectError(o, "no-such-model");
  o = MainJob();
  o.gpus = 0;
  ExpectError(o, "--gpus");
  o = MainJob();
  o.gpus = -8;
  ExpectError(o, "--gpus");
  o = MainJob();
  o.gpus = int64_t{1} << 40;
  ExpectError(o, "--gpus");
  o = MainJob();
  o.mem_gb = -80;
  ExpectError(o, "--mem");
  o = MainJob();
  o.mem_gb = 0.001;
  ExpectError(o, "0.001");
  o = MainJob();
  o.zero = 5;
  ExpectError(o, "--zero");
  o = MainJob();
  o.ep = 0;
  ExpectError(o, "--ep");
  // A fixed EP on a dense model: no plan, naming the rule.
  o = MainJob();
  o.ep = 2;
  ExpectError(o, "ep=>moe");
  o = MainJob();
  o.recompute = "sometimes";
  ExpectError(o, "--recompute");
  o = MainJob();
  o.global_batch = 0;
  ExpectError(o, "--global-batch");
  o = MainJob();
  o.seq = -1;
  ExpectError(o, "--seq");
  o = MainJob();
  o.grad_dtype = "fp8";
  ExpectError(o, "--grad-dtype");
  o = MainJob();
  o.gpu = "tpu-v5";
  ExpectError(o, "tpu-v5");
  o = MainJob();
  o.mem_gb.reset();
  ExpectError(o, "--mem");
  o = MainJob();
  o.tp = 3;  // 64 heads, 8 KV heads: TP=3 divides neither
  ExpectError(o, "rule");
  o = MainJob();
  o.model = "13B";
  o.gpus = 16;
  o.tp = 16;
  o.allow_tp_across_nodes = true;
  ExpectError(o, "heads%tp");
}

TEST(PlanCliTest, TruncatedConfigJsonIsAnError) {
  std::string path = testing::TempDir() + "/truncated_config.json";
  {
    std::ofstream f(path);
    f << "{\"model_type\": \"llama\", \"hidden_size\": 4096, \"num_hidden_";
  }
  PlanCliOptions o = MainJob();
  o.model = path;
  ExpectError(o, "truncated_config.json");
  std::remove(path.c_str());
}

TEST(PlanCliTest, SavedPlanRoundTrips) {
  std::string path = testing::TempDir() + "/saved_plan.json";
  PlanCliOptions o = MainJob();
  o.save_plan = path;
  o.top = 2;
  o.pick = 2;
  ASSERT_TRUE(RunCli(o).status.ok());
  std::ifstream f(path);
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["schema"], "p3d-saved-plan/1");
  EXPECT_TRUE(j["prediction"]["fits"].get<bool>());
  std::remove(path.c_str());
}

// --placement: the megatron-core framework with tp-pp-dp fixed; the table
// names the plans of that placement, the saved plan keeps it, a bad name and
// a framework that cannot run it are errors naming the flag or rule.
TEST(PlanCliTest, PlacementIsFixedSavedAndRefusedWhereUnsupported) {
  std::string path = testing::TempDir() + "/saved_placement.json";
  PlanCliOptions o = MainJob();
  o.framework = "megatron-core";
  o.placement = "tp-pp-dp";
  o.pp = 8;
  o.save_plan = path;
  CliResult r = RunCli(o);
  ASSERT_TRUE(r.status.ok()) << r.status.ToString();
  EXPECT_NE(r.out.find("placement tp-pp-dp"), std::string::npos) << r.out;
  std::ifstream f(path);
  nlohmann::json j = nlohmann::json::parse(f);
  EXPECT_EQ(j["plan"]["placement"], "tp-pp-dp");
  std::remove(path.c_str());
  o = MainJob();
  o.placement = "dp-first";
  ExpectError(o, "--placement");
  o = MainJob();
  o.placement = "tp-pp-dp";  // p3d's executor: one rank order
  ExpectError(o, "no-tp-pp-dp");
}

TEST(PlanCliTest, NothingFitsExitsInfeasible) {
  PlanCliOptions o;
  o.model = "13B";
  o.gpus = 8;
  o.gpu = "rtx3090";
  o.offload = "none";  // issue 8: without offload no layout of 13B fits 8 x 24 GB
  CliResult r = RunCli(o);
  EXPECT_EQ(r.status.code(), Status::Code::kInfeasible);
  EXPECT_NE(r.out.find("NO PLAN FITS"), std::string::npos);
}

}  // namespace
}  // namespace p3d
