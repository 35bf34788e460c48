// Framework profiles as data (simulator/frameworks/*.json): every built-in
// profile loads with a source for every field and rule and survives a JSON
// round trip (also through a saved plan, which p3d-run refuses unless it is
// p3d's); p3d's profile is exactly the executor's defaults; bad files are
// refused naming the field.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "simulator/executor_support.h"
#include "simulator/framework_profile.h"
#include "simulator/saved_plan.h"

namespace p3d {
namespace {

using nlohmann::json;

// A profile document without its sources: what the mechanisms are.
json Values(json doc) {
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it->is_object() && it->contains("source")) it->erase("source");
  for (json& rule : doc["rules"]) rule.erase("source");
  return doc;
}

TEST(FrameworkProfiles, EveryBuiltinLoadsWithASourceForEveryFieldAndRule) {
  ASSERT_TRUE(BuiltinFrameworksStatus().ok()) << BuiltinFrameworksStatus().ToString();
  const std::vector<std::string>& names = BuiltinFrameworkNames();
  for (const char* required : {"p3d", "megatron-core", "torchtitan", "deepspeed", "nemo"})
    EXPECT_NE(std::find(names.begin(), names.end(), required), names.end()) << required;
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    StatusOr<FrameworkProfile> p = LoadFrameworkProfile(name);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->framework.name, name);
    const json doc = FrameworkProfileToJson(*p);
    int fields = 0;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (!it->is_object()) continue;
      ++fields;
      EXPECT_FALSE((*it)["source"].get<std::string>().empty()) << it.key();
    }
    EXPECT_EQ(p->sources.size(), static_cast<size_t>(fields));
    for (const json& rule : doc["rules"]) EXPECT_FALSE(rule["source"].get<std::string>().empty()) << rule;
    // The document parses back to the same profile.
    StatusOr<FrameworkProfile> again = ParseFrameworkProfile(doc, "round trip");
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_EQ(FrameworkProfileToJson(*again), doc);
  }
}

// The C++ defaults (Framework{}, TrainingSpec{}, Plan{}) are p3d's executor;
// p3d.json states the same values with their sources.
TEST(FrameworkProfiles, P3dProfileIsTheExecutorDefaults) {
  FrameworkProfile defaults;
  defaults.description = P3dFrameworkProfile().description;
  defaults.version = P3dFrameworkProfile().version;
  const TrainingSpec t;
  defaults.attention = Plan{}.attention;
  defaults.attention_blocks = t.attention_blocks;
  defaults.dropout = t.dropout;
  defaults.logits_chunk_tokens = t.logits_chunk_tokens;
  defaults.precision = t.precision;
  EXPECT_EQ(Values(FrameworkProfileToJson(P3dFrameworkProfile())), Values(FrameworkProfileToJson(defaults)));
  PlanRequest request;
  EXPECT_EQ(request.framework.framework.name, "p3d");
}

// pytorch-fsdp2 (docs/frameworks/pytorch-fsdp2.md): the eager fields load;
// every other built-in leaves them at p3d's executor's values, except that
// the FSDP2 trainers (torchtitan, nemo-automodel) state PyTorch's
// zero_grad(set_to_none=True) too.
TEST(FrameworkProfiles, PytorchFsdp2CarriesTheEagerMechanisms) {
  const Framework fsdp2 = LoadFrameworkProfile("pytorch-fsdp2").value().framework;
  ASSERT_TRUE(fsdp2.elementwise.has_value());
  EXPECT_EQ(fsdp2.elementwise->rotary, (OpBytes{48, 58}));
  EXPECT_EQ(fsdp2.elementwise->loss, (OpBytes{22, 26}));
  ASSERT_TRUE(fsdp2.fsdp_copies.has_value());
  EXPECT_EQ(*fsdp2.fsdp_copies, (FsdpCopyBytes{10, 4, 6, 8, 12}));
  EXPECT_EQ(fsdp2.loss_fp32_tensors, 3);
  EXPECT_TRUE(fsdp2.swiglu_saves_silu);
  EXPECT_TRUE(fsdp2.grads_set_to_none);
  EXPECT_TRUE(fsdp2.master_is_param);
  for (const std::string& name : BuiltinFrameworkNames()) {
    if (name == "pytorch-fsdp2") continue;
    const Framework f = LoadFrameworkProfile(name).value().framework;
    EXPECT_FALSE(f.elementwise || f.fsdp_copies || f.swiglu_saves_silu) << name;
    EXPECT_EQ(f.grads_set_to_none, name == "torchtitan" || name == "nemo-automodel") << name;
    EXPECT_EQ(f.loss_fp32_tensors, 1) << name;
  }
}

TEST(FrameworkProfiles, ApplySetsTheRecipeAndTheMechanisms) {
  TrainingSpec t;
  const FrameworkProfile legacy = LoadFrameworkProfile("megatron-lm-2022").value();
  ApplyFrameworkProfile(legacy, &t);
  EXPECT_EQ(t.framework.name, "megatron-lm-2022");
  EXPECT_EQ(t.attention_blocks, 1);
  EXPECT_TRUE(t.dropout);
  EXPECT_EQ(t.logits_chunk_tokens, 0);
  EXPECT_EQ(t.framework.tp_overlap, TpOverlap::kAsyncGrad);
  EXPECT_FALSE(t.framework.grad_reduce_overlap);
  EXPECT_EQ(t.precision.activation_bytes, 2);
}

TEST(FrameworkProfiles, ASavedPlanCarriesItsProfile) {
  PlanRequest request;
  request.model = ModelSpec{};
  request.model.name = "m";
  request.model.layers = 4, request.model.hidden = 256, request.model.heads = 4, request.model.kv_heads = 4;
  request.model.ffn = 1024, request.model.vocab = 1000, request.model.max_positions = 2048;
  request.cluster = CatalogCluster("h100-sxm").value();
  request.cluster.num_gpus = 8;
  SetFramework(LoadFrameworkProfile("torchtitan").value(), &request);
  request.training.dropout = true;  // a flag over the profile's default survives too
  request.training.ep_a2a_overlap = true;
  request.training.ep_deepep = true;
  request.training.global_batch = 8;
  EvaluatedPlan e;
  e.plan.dp = 8;
  e.plan.zero = 3;
  StatusOr<SavedPlan> saved = ParseSavedPlan(SavedPlanToJson(request, e), "plan.json");
  ASSERT_TRUE(saved.ok()) << saved.status().ToString();
  EXPECT_EQ(saved->request.framework.framework.name, "torchtitan");
  EXPECT_EQ(FrameworkProfileToJson(saved->request.framework), FrameworkProfileToJson(request.framework));
  EXPECT_TRUE(saved->request.training.framework.master_is_param);
  EXPECT_EQ(saved->request.training.framework.reshard_after_forward, Reshard::kNotWithPp);
  EXPECT_EQ(saved->request.training.logits_chunk_tokens, 0);
  EXPECT_TRUE(saved->request.training.dropout);
  EXPECT_TRUE(saved->request.training.ep_a2a_overlap);
  EXPECT_TRUE(saved->request.training.ep_deepep);
  // p3d-run refuses it: its prediction assumed torchtitan's mechanisms.
  const Status run = CheckPlannedForExecutor(saved->request.framework);
  EXPECT_EQ(run.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(run.message().find("rule framework=p3d"), std::string::npos) << run.message();
  EXPECT_TRUE(CheckPlannedForExecutor(P3dFrameworkProfile()).ok());
}

class BadProfile : public ::testing::Test {
 protected:
  json Good() const { return FrameworkProfileToJson(LoadFrameworkProfile("megatron-core").value()); }
  void ExpectRefused(const json& doc, const std::string& needle) const {
    StatusOr<FrameworkProfile> p = ParseFrameworkProfile(doc, "profile x.json");
    ASSERT_FALSE(p.ok()) << needle;
    EXPECT_EQ(p.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
    EXPECT_NE(p.status().message().find("profile x.json"), std::string::npos) << p.status().message();
  }
};

TEST_F(BadProfile, UnknownKeysAreRefusedWithAHint) {
  json doc = Good();
  doc["tp_overlapp"] = doc["tp_overlap"];
  ExpectRefused(doc, "did you mean 'tp_overlap'");
  doc = Good();
  doc["grad_bucket_elements"]["units"] = "params";
  ExpectRefused(doc, "field 'units' is not a known field");
  doc = Good();
  doc["rules"][0]["id"] = "pp=>zero<=2";
  ExpectRefused(doc, "did you mean 'pp=>zero<=1'");
}

TEST_F(BadProfile, EagerFieldsAreCheckedLikeTheOthers) {
  const json eager = FrameworkProfileToJson(LoadFrameworkProfile("pytorch-fsdp2").value());
  json doc = eager;
  doc["elementwise_bytes"]["value"]["rotary"] = json::array({48});
  ExpectRefused(doc, "field 'rotary' must be [forward, backward]");
  doc = eager;
  doc["elementwise_bytes"]["value"].erase("loss");
  ExpectRefused(doc, "field 'loss' must be [forward, backward]");
  doc = eager;
  doc["fsdp_copy_bytes"]["value"]["gather_shrd"] = 10;
  ExpectRefused(doc, "did you mean 'gather_shard'");
  doc = eager;
  doc["loss_fp32_tensors"]["value"] = 0;
  ExpectRefused(doc, "loss_fp32_tensors");
  doc = eager;
  doc["grads_set_to_none"].erase("source");
  ExpectRefused(doc, "field 'source' is missing");
  doc = eager;
  doc["fused_cross_entropy"]["value"] = true;
  ExpectRefused(doc, "prices the unfused cross-entropy");
}

TEST_F(BadProfile, EveryFieldNeedsASource) {
  json doc = Good();
  doc["tp_overlap"].erase("source");
  ExpectRefused(doc, "field 'source' is missing");
  doc = Good();
  doc["grad_reduce_overlap"]["source"] = " ";
  ExpectRefused(doc, "cites the framework file or flag");
  doc = Good();
  doc["rules"][1]["source"] = "";
  ExpectRefused(doc, "field 'source' is empty");
  doc = Good();
  doc.erase("selective_recompute");
  ExpectRefused(doc, "field 'selective_recompute' is missing");
}

TEST_F(BadProfile, ValuesAreCheckedAndNamed) {
  json doc = Good();
  doc["schema"] = "p3d-framework/0";
  ExpectRefused(doc, "expected 'p3d-framework/1'");
  doc = Good();
  doc["tp_overlap"]["value"] = "ring";
  ExpectRefused(doc, "none, async-grad or userbuffers");
  doc = Good();
  doc["grad_bucket_elements"]["value"] = 0;
  ExpectRefused(doc, "grad_bucket_elements");
  doc = Good();
  doc["rules"][0]["kind"] = "soft";
  ExpectRefused(doc, "limit or gap");
  doc = Good();
  doc["rules"].push_back(doc["rules"][0]);
  ExpectRefused(doc, "listed twice");
  doc = Good();
  doc["name"] = "Megatron Core";
  ExpectRefused(doc, "a-z, 0-9 and '-'");
  doc = Good();
  doc["precision"]["value"]["grad_bytes"] = 3.5;
  ExpectRefused(doc, "grad_bytes");
}

TEST_F(BadProfile, PlacementsAreCheckedAndNamed) {
  json doc = Good();
  doc["placements"]["value"] = json::array({"tp-pp-dp"});  // without Megatron's default order
  ExpectRefused(doc, "must include tp-cp-ep-dp-pp");
  doc = Good();
  doc["placements"]["value"] = json::array({"tp-cp-ep-dp-pp", "pp-first"});
  ExpectRefused(doc, "must list tp-cp-ep-dp-pp or tp-pp-dp");
  doc = Good();
  doc["rules"].push_back(json{{"id", "no-tp-pp-dp"}, {"kind", "limit"}, {"source", "x"}});
  ExpectRefused(doc, "it follows from 'placements'");
}

TEST_F(BadProfile, ContradictionsAreRefused) {
  json doc = Good();
  doc["zero_reduce_scatter"]["value"] = false;  // --overlap-param-gather needs the distributed optimizer
  ExpectRefused(doc, "param_gather_overlap");
  doc = Good();
  doc["tp_overlap_buffers"]["value"] = 0;
  ExpectRefused(doc, "exactly when tp_overlap is userbuffers");
  doc = Good();
  doc["grad_reduce_overlap"]["value"] = false;  // while some stages are said to overlap
  ExpectRefused(doc, "must be none while grad_reduce_overlap is false");
}

TEST(FrameworkProfiles, NamesAndFilesResolve) {
  StatusOr<FrameworkProfile> unknown = LoadFrameworkProfile("megatron");
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), Status::Code::kNotFound);
  EXPECT_NE(unknown.status().message().find("megatron-core"), std::string::npos);

  const std::string path = ::testing::TempDir() + "/custom-framework.json";
  json doc = FrameworkProfileToJson(LoadFrameworkProfile("deepspeed").value());
  doc["name"] = "my-deepspeed";
  doc["grad_bucket_elements"]["value"] = 2e8;
  std::ofstream(path) << doc.dump(2);
  StatusOr<FrameworkProfile> custom = LoadFrameworkProfile(path);
  ASSERT_TRUE(custom.ok()) << custom.status().ToString();
  EXPECT_EQ(custom->framework.name, "my-deepspeed");
  EXPECT_EQ(custom->framework.grad_bucket_elements, 2e8);
  std::ofstream(path) << "{\"schema\": \"p3d-framework/1\"";
  EXPECT_FALSE(LoadFrameworkProfile(path).ok());
  std::remove(path.c_str());
}

// The context-parallel and hybrid-sharding support rules, each with a plan
// that breaks it and one that does not; p3d-run's check refuses CP and HSDP
// by name (the executor has no K/V ring and no shard groups).
TEST(FrameworkProfiles, ContextParallelAndHybridShardRules) {
  Plan plain;
  plain.dp = 8, plain.zero = 1;
  Plan cp = plain;
  cp.cp = 2;
  Plan hsdp1 = plain;
  hsdp1.zero_shard = 4;
  Plan hsdp3 = hsdp1;
  hsdp3.zero = 3;
  for (SupportRule r : {SupportRule::kContextParallel, SupportRule::kHybridShard,
                        SupportRule::kHybridShardZero1, SupportRule::kHybridShardZero3})
    EXPECT_FALSE(Breaks(r, plain)) << SupportRuleId(r);
  EXPECT_TRUE(Breaks(SupportRule::kContextParallel, cp));
  EXPECT_TRUE(Breaks(SupportRule::kHybridShard, hsdp1));
  EXPECT_FALSE(Breaks(SupportRule::kHybridShardZero1, hsdp1));
  EXPECT_TRUE(Breaks(SupportRule::kHybridShardZero1, hsdp3));
  EXPECT_TRUE(Breaks(SupportRule::kHybridShardZero3, hsdp1));
  EXPECT_FALSE(Breaks(SupportRule::kHybridShardZero3, hsdp3));
  for (const char* id : {"no-cp", "no-hsdp", "hsdp=>zero1", "hsdp=>zero3"}) {
    SupportRule r;
    ASSERT_TRUE(ParseSupportRule(id, &r)) << id;
    EXPECT_STREQ(SupportRuleId(r), id);
  }
  const Status c = CheckExecutorSupports(cp);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.message().find("rule no-cp"), std::string::npos) << c.message();
  const Status h = CheckExecutorSupports(hsdp1);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.message().find("rule no-hsdp"), std::string::npos) << h.message();
  cp.cp = 0;
  EXPECT_NE(CheckExecutorSupports(cp).message().find("rule tp,cp,pp,vpp>=1"), std::string::npos);
  // Which profiles run them (their JSON cites the source).
  auto limits = [](const char* name) { return LoadFrameworkProfile(name).value().framework.limits; };
  for (const char* name : {"megatron-core", "nemo", "torchtitan"})
    EXPECT_FALSE(limits(name) & RuleBit(SupportRule::kContextParallel)) << name;
  for (const char* name : {"deepspeed", "llm-foundry", "megatron-lm-2021", "megatron-lm-2022", "megatron-deepspeed"})
    EXPECT_TRUE(limits(name) & RuleBit(SupportRule::kContextParallel)) << name;
}

// Which frameworks build the tp-pp-dp placement (their "placements"), the
// rule the others get, and p3d-run's refusal naming it.
TEST(FrameworkProfiles, PlacementsFollowTheProfile) {
  auto limits = [](const char* name) { return LoadFrameworkProfile(name).value().framework.limits; };
  for (const char* name : {"megatron-core", "nemo"})
    EXPECT_FALSE(limits(name) & RuleBit(SupportRule::kPpBeforeDp)) << name;
  for (const char* name : {"p3d", "deepspeed", "llm-foundry", "megatron-lm-2021", "megatron-lm-2022",
                           "megatron-deepspeed", "torchtitan"})
    EXPECT_TRUE(limits(name) & RuleBit(SupportRule::kPpBeforeDp)) << name;
  EXPECT_NE(FrameworkSummary(LoadFrameworkProfile("nemo").value()).find("placements tp-cp-ep-dp-pp, tp-pp-dp"),
            std::string::npos);
  EXPECT_EQ(FrameworkSummary(P3dFrameworkProfile()).find("tp-pp-dp"), std::string::npos);
  Plan plan;
  plan.dp = 4, plan.pp = 2, plan.zero = 1;
  EXPECT_TRUE(CheckExecutorSupports(plan).ok()) << CheckExecutorSupports(plan).message();
  plan.placement = Placement::kPpBeforeDp;
  const Status s = CheckExecutorSupports(plan);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rule no-tp-pp-dp"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace p3d
