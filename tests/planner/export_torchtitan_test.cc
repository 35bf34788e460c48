// Round trip: the torchtitan TOML fragment is parsed back into a Plan the way
// torchtitan reads it (degrees, schedule and split points, batch, activation
// checkpointing) and must equal the exported plan; plans torchtitan cannot
// run are refused naming the rule.
#include <gtest/gtest.h>

#include <map>
#include <sstream>

#include "planner/export.h"
#include "tests/planner/export_test_plans.h"

namespace p3d {
namespace {

using testing::Evaluated;
using testing::ExportCase;
using testing::ExpectRefused;
using testing::MakePlan;

PlanRequest RequestFor(const ModelSpec& model, const Plan& plan, int64_t seq = 2048) {
  return testing::RequestFor(model, plan, seq, 8, "torchtitan");
}

// "[table]" and "key = value" lines -> {"table.key": value}; fails the test
// on a repeated key or a line that is neither.
std::map<std::string, std::string> ParseToml(const std::string& text) {
  std::istringstream in(text);
  std::map<std::string, std::string> keys;
  std::string line, table;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.front() == '[' && line.back() == ']' && line[1] != '"') {
      table = line.substr(1, line.size() - 2);
      continue;
    }
    const size_t eq = line.find(" = ");
    EXPECT_NE(eq, std::string::npos) << line;
    if (eq == std::string::npos) continue;
    const std::string key = table + "." + line.substr(0, eq);
    EXPECT_EQ(keys.count(key), 0u) << "repeated " << key;
    keys[key] = line.substr(eq + 3);
  }
  return keys;
}

std::string Unquote(const std::string& v) {
  EXPECT_TRUE(v.size() >= 2 && v.front() == '"' && v.back() == '"') << v;
  return v.size() >= 2 ? v.substr(1, v.size() - 2) : v;
}

// The first layer of each pipeline stage after the first, from
// ["layers.a", "layers.b"].
std::vector<int64_t> SplitPoints(const std::string& v) {
  std::vector<int64_t> out;
  for (size_t at = v.find("layers."); at != std::string::npos; at = v.find("layers.", at + 1))
    out.push_back(std::stoll(v.substr(at + 7)));
  return out;
}

// The plan torchtitan runs from the fragment: DP = replicate x shard; FSDP2
// over shard x CP ranks (ZeRO-3 when more than one, or with CPU offload),
// replicated across `replicate` groups (HSDP); the pipeline's stage sizes from
// the split points; micro-batches from the batch keys.
Plan ReadBack(const std::map<std::string, std::string>& k, int64_t layers) {
  auto i = [&](const std::string& key) {
    auto it = k.find(key);
    EXPECT_NE(it, k.end()) << key;
    return it == k.end() ? int64_t{-1} : std::stoll(it->second);
  };
  Plan p;
  const int replicate = static_cast<int>(i("parallelism.data_parallel_replicate_degree"));
  const int shard = static_cast<int>(i("parallelism.data_parallel_shard_degree"));
  p.tp = static_cast<int>(i("parallelism.tensor_parallel_degree"));
  p.cp = static_cast<int>(i("parallelism.context_parallel_degree"));
  p.pp = static_cast<int>(i("parallelism.pipeline_parallel_degree"));
  p.dp = replicate * shard;
  const bool offload = k.count("training.enable_cpu_offload") && k.at("training.enable_cpu_offload") == "true";
  if (offload) p.offload = Offload::kOptimizerAndParams;
  p.zero = offload || shard * p.cp > 1 ? 3 : 0;
  p.zero_shard = p.zero == 3 && replicate > 1 ? shard * p.cp : 0;
  const int64_t local = i("training.local_batch_size"), global = i("training.global_batch_size");
  if (p.pp > 1) {
    const std::vector<int64_t> splits = SplitPoints(k.at("parallelism.pipeline_parallel_split_points"));
    const int stages = static_cast<int>(splits.size()) + 1;
    p.vpp = stages / p.pp;
    EXPECT_EQ(Unquote(k.at("parallelism.pipeline_parallel_schedule")), p.vpp > 1 ? "Interleaved1F1B" : "1F1B");
    // Stage sizes; the first and last rank's first chunk give the counts
    // Megatron's --decoder-first/last-pipeline-num-layers would (0 = the middle size).
    std::vector<int64_t> size;
    int64_t prev = 0;
    for (int64_t s : splits) size.push_back(s - prev), prev = s;
    size.push_back(layers - prev);
    const int64_t first = size[0] * p.vpp, last = size[p.pp - 1] * p.vpp;
    const int64_t middle = p.pp > 2 ? size[1] * p.vpp : -1;
    if (p.pp == 2) {  // p3d writes a two-stage split as the first stage's count (StageSplit)
      p.first_stage_layers = first != last ? static_cast<int>(first) : 0;
    } else {
      p.first_stage_layers = first != middle ? static_cast<int>(first) : 0;
      p.last_stage_layers = last != middle ? static_cast<int>(last) : 0;
    }
    for (int v = 0; v < stages; ++v) EXPECT_EQ(size[v] * p.vpp, StageLayers(p, layers, v % p.pp)) << v;
    p.micro_batch = i("parallelism.pipeline_parallel_microbatch_size");
    p.grad_accum = local / p.micro_batch;
    EXPECT_EQ(global, local * p.dp);
  } else {
    p.micro_batch = local;
    p.grad_accum = global / (local * p.dp);
    EXPECT_EQ(global % (local * p.dp), 0);
  }
  const std::string mode = Unquote(k.at("activation_checkpoint.mode"));
  EXPECT_TRUE(ParseRecompute(mode, &p.recompute)) << mode;
  if (p.recompute == Recompute::kSelective) {
    EXPECT_EQ(Unquote(k.at("activation_checkpoint.selective_ac_option")), "op");
  }
  p.sequence_parallel = p.tp > 1;  // torchtitan's TP always shards the norms (rule tp=>sp)
  return p;
}

class TorchtitanRoundTrip : public ::testing::TestWithParam<ExportCase> {};

TEST_P(TorchtitanRoundTrip, ParsedBackEqualsThePlan) {
  const ExportCase& c = GetParam();
  const Plan& p = c.plan;
  const PlanRequest request = RequestFor(c.model, p, c.seq);
  auto exported = ExportTorchtitanConfig(request, Evaluated(p));
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  const auto k = ParseToml(exported->text);
  const Plan back = ReadBack(k, c.model.layers);
  EXPECT_EQ(PlanSummary(back), PlanSummary(p)) << exported->text;
  EXPECT_EQ(back.first_stage_layers, p.first_stage_layers);
  EXPECT_EQ(back.last_stage_layers, p.last_stage_layers);
  EXPECT_EQ(std::stoll(k.at("training.seq_len")), c.seq);
  EXPECT_EQ(Unquote(k.at("training.mixed_precision_param")), "bfloat16");
  EXPECT_EQ(Unquote(k.at("training.mixed_precision_reduce")), "float32");
  EXPECT_EQ(k.count("parallelism.context_parallel_rotate_method"), p.cp > 1 ? 1u : 0u);
}

Plan With(Plan p, int cp, int zero_shard = 0, Offload off = Offload::kNone) {
  p.cp = cp;
  p.zero_shard = zero_shard;
  p.offload = off;
  return p;
}

Plan Stages(Plan p, int first, int last) {
  p.first_stage_layers = first;
  p.last_stage_layers = last;
  return p;
}

INSTANTIATE_TEST_SUITE_P(
    Plans, TorchtitanRoundTrip,
    ::testing::Values(
        ExportCase{"llama7b_ddp8", testing::Llama2_7B(), MakePlan(8, 1, 1, 1, 0, 2, 4)},
        ExportCase{"llama7b_fsdp16_sel", testing::Llama2_7B(),
                   MakePlan(16, 1, 1, 1, 3, 1, 8, Recompute::kSelective)},
        ExportCase{"llama7b_hsdp_4x4_full", testing::Llama2_7B(),
                   With(MakePlan(16, 1, 1, 1, 3, 1, 4, Recompute::kFull), 1, 4)},
        ExportCase{"llama70b_tp8_cp2_fsdp4", testing::Llama2_70B(),
                   With(MakePlan(4, 8, 1, 1, 3, 1, 8, Recompute::kFull, true), 2), 8192},
        ExportCase{"llama70b_tp8_cp4_pp4_vpp2_hsdp", testing::Llama2_70B(),
                   With(MakePlan(4, 8, 4, 2, 3, 1, 16, Recompute::kNone, true), 4, 8), 16384},
        ExportCase{"llama405b_tp8_cp16_pp16_uneven", ZooModel("llama-3.1-405b").value(),
                   Stages(With(MakePlan(8, 8, 16, 1, 3, 1, 16, Recompute::kFull, true), 16), 7, 7), 131072},
        ExportCase{"llama7b_offload_params", testing::Llama2_7B(),
                   With(MakePlan(4, 1, 1, 1, 3, 1, 8), 1, 0, Offload::kOptimizerAndParams)}),
    [](const ::testing::TestParamInfo<ExportCase>& info) { return info.param.name; });

Status ExportStatus(const Plan& plan, int64_t seq = 2048) {
  auto r = ExportTorchtitanConfig(RequestFor(testing::Llama2_7B(), plan, seq), Evaluated(plan));
  return r.ok() ? Status::Ok() : r.status();
}

TEST(TorchtitanExport, RefusesWhatTorchtitanCannotRun) {
  ExpectRefused(ExportStatus(MakePlan(8, 1, 1, 1, 1, 1, 8)), "rule zero!=1");                   // profile
  ExpectRefused(ExportStatus(MakePlan(4, 2, 1, 1, 3, 1, 8)), "rule tp=>sp");                    // profile
  ExpectRefused(ExportStatus(With(MakePlan(4, 1, 1, 1, 0, 1, 8), 2)), "rule zero0=>1d");       // CP mesh
  ExpectRefused(ExportStatus(With(MakePlan(8, 1, 1, 1, 3, 1, 8), 4, 2)), "not a multiple of CP=4");
  Plan unfused = MakePlan(8, 1, 1, 1, 3, 1, 8);
  unfused.attention = AttentionImpl::kUnfused;
  ExpectRefused(ExportStatus(unfused), "unfused");
}

TEST(TorchtitanExport, RefusesAPlanPredictedForAnotherFramework) {
  const Plan p = MakePlan(8, 1, 1, 1, 3, 1, 8);
  auto r = ExportTorchtitanConfig(testing::RequestFor(testing::Llama2_7B(), p, 2048, 8, "megatron-core"),
                                  Evaluated(p));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rule export-framework"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace p3d

namespace p3d {
namespace {

// FP8: the converter and recipe torchtitan's job config names (docs/float8.md:
// [model] converters, [float8] recipe_name; MXFP8 through the "mx" converter).
TEST(TorchtitanExport, Fp8RecipeNamesTheConverter) {
  const Plan p = MakePlan(8, 1, 1, 1, 3, 1, 8);
  auto keys = [&](Fp8Recipe recipe) {
    PlanRequest request = RequestFor(testing::Llama2_7B(), p);
    request.training.fp8 = recipe;
    auto r = ExportTorchtitanConfig(request, Evaluated(p));
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? ParseToml(r->text) : std::map<std::string, std::string>{};
  };
  const auto off = keys(Fp8Recipe::kOff);
  EXPECT_EQ(off.count("model.converters"), 0u);
  const auto tensorwise = keys(Fp8Recipe::kTensorwise);
  EXPECT_EQ(tensorwise.at("model.converters"), "[\"float8\"]");
  EXPECT_EQ(Unquote(tensorwise.at("float8.recipe_name")), "tensorwise");
  EXPECT_EQ(tensorwise.count("float8.enable_fsdp_float8_all_gather"), 0u);  // bf16 gather predicted
  const auto mx = keys(Fp8Recipe::kMxfp8);
  EXPECT_EQ(mx.at("model.converters"), "[\"mx\"]");
  EXPECT_EQ(Unquote(mx.at("mx.recipe_name")), "mxfp8");
}

}  // namespace
}  // namespace p3d
