// Round trip: the DeepSpeed config p3d writes is parsed back and every value
// is checked against the plan; plans DeepSpeed cannot run are refused.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>

#include "planner/export.h"
#include "tests/planner/export_test_plans.h"

namespace p3d {
namespace {

using nlohmann::json;
using testing::Evaluated;
using testing::ExportCase;
using testing::MakePlan;

// ds_config.json states the deepspeed profile's mechanisms.
PlanRequest RequestFor(const ModelSpec& model, const Plan& plan, int64_t seq = 2048) {
  return testing::RequestFor(model, plan, seq, 8, "deepspeed");
}

std::set<std::string> Keys(const json& j) {
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  return keys;
}

bool HasNoteContaining(const ExportedFile& f, const std::string& needle) {
  return std::any_of(f.notes.begin(), f.notes.end(),
                     [&](const std::string& n) { return n.find(needle) != std::string::npos; });
}

class DeepSpeedRoundTrip : public ::testing::TestWithParam<ExportCase> {};

TEST_P(DeepSpeedRoundTrip, EveryValueMatchesThePlan) {
  const ExportCase& c = GetParam();
  PlanRequest request = RequestFor(c.model, c.plan, c.seq);
  auto exported = ExportDeepSpeedConfig(request, Evaluated(c.plan));
  ASSERT_TRUE(exported.ok()) << exported.status().ToString();
  const json config = json::parse(exported->text);
  const Plan& p = c.plan;
  const int64_t h = c.model.hidden;
  const Framework& fw = request.training.framework;

  // Batch identity as DeepSpeed checks it, with DP = world / (TP * PP).
  const int dp = request.cluster.num_gpus / (p.tp * p.pp);
  EXPECT_EQ(config["train_batch_size"].get<int64_t>(), request.training.global_batch);
  EXPECT_EQ(config["train_micro_batch_size_per_gpu"].get<int64_t>(), p.micro_batch);
  EXPECT_EQ(config["gradient_accumulation_steps"].get<int64_t>(), p.grad_accum);
  EXPECT_EQ(config["train_batch_size"].get<int64_t>(),
            config["train_micro_batch_size_per_gpu"].get<int64_t>() *
                config["gradient_accumulation_steps"].get<int64_t>() * dp);
  EXPECT_DOUBLE_EQ(config["gradient_clipping"].get<double>(), 1.0);
  EXPECT_EQ(config["bf16"], json({{"enabled", true}}));
  EXPECT_EQ(config["data_types"], json({{"grad_accum_dtype", "fp32"}}));

  const json& zero = config["zero_optimization"];
  EXPECT_EQ(zero["stage"].get<int>(), p.zero);
  if (p.zero == 0) {
    EXPECT_EQ(Keys(zero), std::set<std::string>({"stage"}));
  } else if (p.zero <= 2) {
    EXPECT_EQ(Keys(zero), std::set<std::string>({"stage", "overlap_comm", "contiguous_gradients",
                                                 "reduce_bucket_size", "reduce_scatter",
                                                 "allgather_partitions", "allgather_bucket_size"}));
    EXPECT_EQ(zero["allgather_bucket_size"].get<int64_t>(), fw.grad_bucket_elements);
    EXPECT_EQ(zero["reduce_scatter"].get<bool>(), fw.zero_reduce_scatter);
    EXPECT_TRUE(zero["allgather_partitions"].get<bool>());
  } else {
    EXPECT_EQ(Keys(zero),
              std::set<std::string>({"stage", "overlap_comm", "contiguous_gradients",
                                     "reduce_bucket_size", "stage3_prefetch_bucket_size",
                                     "stage3_param_persistence_threshold",
                                     "stage3_max_live_parameters", "stage3_max_reuse_distance",
                                     "stage3_gather_16bit_weights_on_model_save"}));
    EXPECT_EQ(zero["stage3_prefetch_bucket_size"].get<int64_t>(), h * h * 9 / 10);
    EXPECT_EQ(zero["stage3_param_persistence_threshold"].get<int64_t>(), 10 * h);
    EXPECT_EQ(zero["stage3_max_live_parameters"].get<int64_t>(), 1000000000);
    EXPECT_EQ(zero["stage3_max_reuse_distance"].get<int64_t>(), 1000000000);
    EXPECT_TRUE(zero["stage3_gather_16bit_weights_on_model_save"].get<bool>());
  }
  if (p.zero >= 1) {
    // The deepspeed profile's overlap and bucket, read back.
    EXPECT_EQ(zero["overlap_comm"].get<bool>(), fw.grad_reduce_overlap);
    EXPECT_TRUE(zero["contiguous_gradients"].get<bool>());
    EXPECT_EQ(zero["reduce_bucket_size"].get<int64_t>(), fw.grad_bucket_elements);
  }

  const bool full = p.recompute == Recompute::kFull;
  ASSERT_EQ(config.contains("activation_checkpointing"), full);
  if (full) {
    const json& ac = config["activation_checkpointing"];
    EXPECT_EQ(ac["number_checkpoints"].get<int64_t>(), (c.model.layers + p.pp - 1) / p.pp);
    for (const char* off :
         {"partition_activations", "cpu_checkpointing", "contiguous_memory_optimization",
          "synchronize_checkpoint_boundary", "profile"}) {
      EXPECT_FALSE(ac[off].get<bool>()) << off;
    }
  }
  ASSERT_EQ(config.contains("pipeline"), full && p.pp > 1);
  if (full && p.pp > 1) {
    EXPECT_EQ(config["pipeline"]["activation_checkpoint_interval"].get<int>(), 1);
  }
  std::set<std::string> expected_top = {"train_batch_size",
                                        "train_micro_batch_size_per_gpu",
                                        "gradient_accumulation_steps",
                                        "gradient_clipping",
                                        "bf16",
                                        "data_types",
                                        "zero_optimization"};
  if (full) expected_top.insert("activation_checkpointing");
  if (full && p.pp > 1) expected_top.insert("pipeline");
  EXPECT_EQ(Keys(config), expected_top);

  // What the config cannot carry is said in the notes.
  EXPECT_EQ(HasNoteContaining(*exported, "Megatron-DeepSpeed with --tensor-model-parallel-size"),
            p.tp > 1);
  EXPECT_EQ(HasNoteContaining(*exported, "PipelineModule(num_stages="), p.pp > 1);
  EXPECT_EQ(HasNoteContaining(*exported, "selective recompute"),
            p.recompute == Recompute::kSelective);
}

INSTANTIATE_TEST_SUITE_P(
    Plans, DeepSpeedRoundTrip,
    ::testing::Values(
        ExportCase{"gpt2_dp8_zero0", testing::Gpt2Small(), MakePlan(8, 1, 1, 1, 0, 4, 16), 1024},
        ExportCase{"gpt2_dp8_zero1_full", testing::Gpt2Small(),
                   MakePlan(8, 1, 1, 1, 1, 8, 2, Recompute::kFull), 1024},
        ExportCase{"llama7b_dp16_zero2", testing::Llama2_7B(), MakePlan(16, 1, 1, 1, 2, 2, 16)},
        ExportCase{"llama7b_dp32_zero3_sel", testing::Llama2_7B(),
                   MakePlan(32, 1, 1, 1, 3, 1, 16, Recompute::kSelective)},
        ExportCase{"llama70b_tp8_pp2_zero1_full", testing::Llama2_70B(),
                   MakePlan(4, 8, 2, 1, 1, 1, 128, Recompute::kFull, true)},
        ExportCase{"llama70b_tp4_pp4_zero0", testing::Llama2_70B(),
                   MakePlan(4, 4, 4, 1, 0, 1, 64)}),
    [](const ::testing::TestParamInfo<ExportCase>& info) { return info.param.name; });

TEST(DeepSpeedExport, Bf16GradientsAndFp32WeightsFollowThePrecision) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Gpt2Small(), plan, 1024);
  request.training.precision.grad_bytes = 2;
  auto bf16_grads = ExportDeepSpeedConfig(request, Evaluated(plan));
  ASSERT_TRUE(bf16_grads.ok()) << bf16_grads.status().ToString();
  EXPECT_EQ(json::parse(bf16_grads->text)["data_types"]["grad_accum_dtype"], "bf16");

  request.training.precision = Precision{};
  request.training.precision.param_bytes = 4;
  auto fp32 = ExportDeepSpeedConfig(request, Evaluated(plan));
  ASSERT_TRUE(fp32.ok()) << fp32.status().ToString();
  EXPECT_FALSE(json::parse(fp32->text)["bf16"]["enabled"].get<bool>());
}

TEST(DeepSpeedExport, RefusesZero2And3WithPipelineNamingTheEngineAssert) {
  for (int zero : {2, 3}) {
    Plan plan = MakePlan(8, 4, 2, 1, zero, 1, 32);
    auto r = ExportDeepSpeedConfig(RequestFor(testing::Llama2_70B(), plan), Evaluated(plan));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Status::Code::kInfeasible);
    EXPECT_NE(
        r.status().message().find("ZeRO-2 and ZeRO-3 are incompatible with pipeline parallelism"),
        std::string::npos);
    EXPECT_NE(r.status().message().find("engine.py"), std::string::npos);
  }
}

TEST(DeepSpeedExport, RefusesInterleavedPipeline) {
  Plan plan = MakePlan(8, 4, 2, 2, 1, 1, 32);
  auto r = ExportDeepSpeedConfig(RequestFor(testing::Llama2_70B(), plan), Evaluated(plan));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInfeasible);
  EXPECT_NE(r.status().message().find("deepspeed: rule vpp=1"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("TrainSchedule"), std::string::npos);
}

TEST(DeepSpeedExport, RefusesAPlanPredictedForAnotherFramework) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  auto r = ExportDeepSpeedConfig(testing::RequestFor(testing::Llama2_7B(), plan, 2048, 8, "megatron-core"),
                                 Evaluated(plan));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("rule export-framework"), std::string::npos) << r.status().message();
  auto ok = ExportDeepSpeedConfig(testing::RequestFor(testing::Llama2_7B(), plan, 2048, 8, "megatron-deepspeed"),
                                  Evaluated(plan));
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST(DeepSpeedExport, RefusesUnevenStagesNamingThePartitionMethods) {
  Plan plan = MakePlan(1, 1, 5, 1, 0, 1, 8);  // GPT-2's 12 layers as 2 x 4 | 4
  plan.last_stage_layers = 4;
  auto r = ExportDeepSpeedConfig(RequestFor(testing::Gpt2Small(), plan, 1024), Evaluated(plan));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInfeasible);
  EXPECT_NE(r.status().message().find("partition_method"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("deepspeed/runtime/pipe/module.py"), std::string::npos);
}

TEST(DeepSpeedExport, BloomNotesItsModelCode) {
  Plan plan = MakePlan(8, 4, 1, 1, 1, 1, 8);
  auto r = ExportDeepSpeedConfig(RequestFor(*ZooModel("bloom-176b"), plan), Evaluated(plan));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  bool noted = false;
  for (const std::string& n : r->notes) noted |= n.find("--position-embedding-type alibi") != std::string::npos;
  EXPECT_TRUE(noted);
}

TEST(DeepSpeedExport, RefusesBrokenBatchIdentityAndGpuCount) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 2, 4);
  PlanRequest request = RequestFor(testing::Gpt2Small(), plan, 1024);
  request.training.global_batch += 8;
  auto batch = ExportDeepSpeedConfig(request, Evaluated(plan));
  ASSERT_FALSE(batch.ok());
  EXPECT_EQ(batch.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(batch.status().message().find("batch identity"), std::string::npos);

  request = RequestFor(testing::Gpt2Small(), plan, 1024);
  request.cluster.num_gpus = 16;
  auto gpus = ExportDeepSpeedConfig(request, Evaluated(plan));
  ASSERT_FALSE(gpus.ok());
  EXPECT_NE(gpus.status().message().find("gpus=dp*tp*cp*pp"), std::string::npos);
}

TEST(DeepSpeedExport, RefusesPrecisionDeepSpeedCannotHold) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Gpt2Small(), plan, 1024);
  request.training.precision.master_bytes = 2;
  auto r = ExportDeepSpeedConfig(request, Evaluated(plan));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("master_bytes=2"), std::string::npos);
}

TEST(ExportPlan, DispatchesByNameAndRejectsUnknownFormats) {
  Plan plan = MakePlan(8, 1, 1, 1, 1, 1, 8);
  PlanRequest request = RequestFor(testing::Gpt2Small(), plan, 1024);
  auto ds = ExportPlan("deepspeed", request, Evaluated(plan));
  ASSERT_TRUE(ds.ok());
  EXPECT_EQ(ds->text, ExportDeepSpeedConfig(request, Evaluated(plan))->text);
  auto unknown = ExportPlan("fsdp", request, Evaluated(plan));
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("deepspeed, megatron, torchtitan, torchrun, slurm"),
            std::string::npos);
}

}  // namespace
}  // namespace p3d

namespace p3d {
namespace {

// DeepSpeed config-json.md: zero_optimization.offload_optimizer (ZeRO 1-3)
// and offload_param (ZeRO-3 only), device "cpu", pinned host memory.
TEST(DeepSpeedExport, OffloadWritesOffloadSectionsForTheStage) {
  const json cpu_pinned = {{"device", "cpu"}, {"pin_memory", true}};
  for (int zero = 1; zero <= 3; ++zero) {
    for (Offload offload : {Offload::kOptimizer, Offload::kOptimizerAndParams}) {
      if (offload == Offload::kOptimizerAndParams && zero != 3) continue;
      Plan plan = MakePlan(8, 1, 1, 1, zero, 1, 8);
      plan.offload = offload;
      auto r = ExportDeepSpeedConfig(RequestFor(testing::Llama2_7B(), plan), Evaluated(plan));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      const json zero_section = json::parse(r->text)["zero_optimization"];
      EXPECT_EQ(zero_section["stage"].get<int>(), zero);
      EXPECT_EQ(zero_section["offload_optimizer"], cpu_pinned) << PlanSummary(plan);
      EXPECT_EQ(zero_section.contains("offload_param"), offload == Offload::kOptimizerAndParams)
          << PlanSummary(plan);
      EXPECT_TRUE(HasNoteContaining(*r, "DeepSpeedCPUAdam"));
    }
  }
  Plan none = MakePlan(8, 1, 1, 1, 2, 1, 8);
  auto r = ExportDeepSpeedConfig(RequestFor(testing::Llama2_7B(), none), Evaluated(none));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(json::parse(r->text)["zero_optimization"].contains("offload_optimizer"));
}

}  // namespace
}  // namespace p3d
