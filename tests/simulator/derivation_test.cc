// The --explain derivation (simulator/derivation.h): the formula evaluator,
// the substitution, and the property that keeps the text honest: over a
// spread of plans, every term the memory and time models record evaluates,
// from its own inputs, to the value the model used, and the parts sum to the
// total.
#include "simulator/derivation.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

#include "models/zoo.h"
#include "simulator/framework_profile.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

double Eval(const char* formula, std::initializer_list<TermInput> in) {
  const std::vector<TermInput> inputs(in);
  auto v = EvaluateFormula(formula, inputs);
  EXPECT_TRUE(v.ok()) << formula << ": " << v.status().ToString();
  return v.ok() ? *v : NAN;
}

TEST(EvaluateFormula, ArithmeticAndFunctions) {
  EXPECT_DOUBLE_EQ(Eval("1 + 2*3", {}), 7);
  EXPECT_DOUBLE_EQ(Eval("(1 + 2)*3", {}), 9);
  EXPECT_DOUBLE_EQ(Eval("8/4/2", {}), 1);
  EXPECT_DOUBLE_EQ(Eval("10 - 4 - 3", {}), 3);
  EXPECT_DOUBLE_EQ(Eval("-a + 2", {{"a", 5}}), -3);
  EXPECT_DOUBLE_EQ(Eval("min(a, b, 7)*max(a, b)", {{"a", 2}, {"b", 3}}), 6);
  EXPECT_DOUBLE_EQ(Eval("ceil(P_r/k)", {{"P_r", 10}, {"k", 4}}), 3);
  EXPECT_DOUBLE_EQ(Eval("2.5e1 + x_1", {{"x_1", 0.5}}), 25.5);
}

TEST(EvaluateFormula, ErrorsNameTheProblem) {
  const std::vector<TermInput> none;
  auto unknown = EvaluateFormula("a + b", std::vector<TermInput>{{"a", 1}});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown input 'b'"), std::string::npos);
  for (const char* bad : {"1 +", "(1 + 2", "1 2", "sqrt(4)", "a$", ""}) {
    auto v = EvaluateFormula(bad, none);
    EXPECT_FALSE(v.ok()) << bad;
  }
}

TEST(Substituted, ReplacesInputNamesOnly) {
  DerivedTerm t{
      "x",  "e*T*H/SPd + max(e, 1e3)", {{"e", 2}, {"T", 4096}, {"H", 8192}, {"SPd", 1}}, 0, "",
      false};
  EXPECT_EQ(Substituted(t), "2*4096*8192/1 + max(2, 1e3)");
}

// Every recorded term, evaluated from its inputs, equals its recorded value.
void ExpectHonest(const std::vector<DerivedTerm>& terms, const std::string& where,
                  std::set<std::string>* names) {
  for (const DerivedTerm& t : terms) {
    names->insert(t.name);
    auto v = EvaluateFormula(t.formula, t.inputs);
    ASSERT_TRUE(v.ok()) << where << " " << t.name << ": " << v.status().ToString();
    EXPECT_NEAR(*v, t.value, 1e-9 * std::abs(t.value) + 1e-15)
        << where << " " << t.name << " = " << t.formula << " = " << Substituted(t);
  }
}

struct Case {
  const char* model;
  const char* gpu;
  int dp, tp, pp, vpp, zero;
  int64_t micro_batch, grad_accum;
  Recompute recompute;
  bool sp;
  Offload offload;
  AttentionImpl attention;
  bool dropout;
  int first_stage_layers = 0, last_stage_layers = 0;
  const char* framework = "p3d";  // the profile whose mechanisms the models apply
  int cp = 1, zero_shard = 0;     // context parallel, hybrid-sharding shard group
  int64_t seq = 0;                // 0: min(2048, the model's positions)
  int ep = 1;                     // expert parallelism (MoE models)
  int etp = 0;                    // expert TP (0 = TP)
  Fp8Recipe fp8 = Fp8Recipe::kOff;
  bool deepep = false;  // TrainingSpec::ep_deepep
};

TEST(Derivation, EveryRecordedTermMatchesItsValue) {
  const Recompute none = Recompute::kNone, sel = Recompute::kSelective, full = Recompute::kFull;
  const AttentionImpl fused = AttentionImpl::kFused, unfused = AttentionImpl::kUnfused;
  const Offload no = Offload::kNone, opt = Offload::kOptimizer,
                params = Offload::kOptimizerAndParams;
  const Case cases[] = {
      {"llama-2-70b", "h100-sxm", 8, 4, 2, 1, 2, 2, 16, sel, true, no, fused, false},
      {"llama-2-70b", "a100-80gb", 2, 8, 4, 2, 1, 1, 32, full, true, no, fused, false},
      {"llama-2-70b", "h100-sxm", 16, 2, 2, 1, 3, 1, 8, none, false, no, unfused, false},
      {"gpt2-xl", "a100-80gb", 4, 1, 4, 3, 0, 4, 8, sel, false, no, unfused, true},
      {"gpt2-xl", "h100-sxm", 8, 1, 1, 1, 3, 4, 2, full, false, no, fused, true},
      {"mixtral-8x7b", "h100-sxm", 4, 8, 2, 2, 1, 1, 12, none, true, no, fused, false},
      {"llama-2-13b", "rtx3090", 8, 1, 1, 1, 3, 1, 8, full, false, params, fused, false},
      {"llama-2-13b", "rtx3090", 4, 2, 1, 1, 2, 1, 16, full, true, opt, fused, false},
      {"llama-2-13b", "a100-80gb", 2, 1, 4, 1, 1, 2, 8, sel, false, opt, unfused, false},
      {"llama-3-8b", "h100-sxm", 1, 1, 1, 1, 0, 4, 2, none, false, no, fused, false},
      // Uneven stages (Megatron's first/last counts) and the embedding norm.
      {"bloom-176b", "a100-80gb", 8, 4, 12, 1, 1, 2, 24, full, true, no, fused, true, 5, 5},
      {"llama-3.1-405b", "h100-sxm", 2, 8, 16, 1, 1, 1, 16, full, true, no, fused, false, 7, 7},
      // Framework mechanisms: TP userbuffers, reduce-scatter ZeRO-1 with the
      // parameter gather overlapped, fused cross-entropy, op-level selective
      // with FSDP2's fp32 reduce and no reshard under PP, no DP overlap, the
      // BF16_Optimizer's accumulation pass and kept bf16 gradients.
      {"llama-2-70b", "h100-sxm", 8, 4, 2, 2, 1, 1, 16, sel, true, no, fused, false, 0, 0,
       "megatron-core"},
      {"llama-2-13b", "a100-80gb", 4, 2, 1, 1, 1, 2, 4, full, true, no, fused, false, 0, 0, "nemo"},
      {"llama-3-8b", "h100-sxm", 8, 1, 1, 1, 3, 2, 2, sel, false, no, fused, false, 0, 0,
       "torchtitan"},
      {"llama-3-8b", "h100-sxm", 4, 1, 2, 1, 3, 1, 8, sel, false, no, fused, false, 0, 0,
       "torchtitan"},
      {"llama-2-13b", "v100-32gb", 4, 4, 2, 1, 0, 2, 8, full, false, no, unfused, true, 0, 0,
       "megatron-lm-2021"},
      {"llama-2-13b", "a100-80gb", 4, 2, 2, 1, 1, 1, 8, full, false, no, unfused, true, 0, 0,
       "megatron-deepspeed"},
      // Eager PyTorch FSDP2: its elementwise bytes and FSDP2 copies on one rank
      // (the gather buffer, the local reduce copy, gradients after the
      // activations at one micro-batch) and under ZeRO-3 with accumulation.
      {"llama-3-8b", "h100-sxm", 1, 1, 1, 1, 0, 1, 1, none, false, no, fused, false, 0, 0,
       "pytorch-fsdp2"},
      {"gpt2-xl", "h100-sxm", 8, 1, 1, 1, 3, 2, 2, sel, false, no, fused, false, 0, 0, "pytorch-fsdp2"},
      // MoE: DeepSeek-V3's MLA, shared experts and 3 leading dense layers on
      // a mixed first stage, EP 8; gpt-oss's windowed layers and biases with
      // EP 4; Qwen3's explicit head_dim, unfused core and optimizer offload
      // sharded over the expert-data-parallel group.
      {"deepseek-v3", "h100-sxm", 8, 2, 4, 1, 1, 1, 8, full, true, no, fused, false, 13, 16,
       "megatron-core", 1, 0, 0, 8},
      {"gpt-oss-120b", "h100-sxm", 8, 1, 2, 1, 1, 1, 8, none, false, no, fused, false, 0, 0,
       "megatron-core", 1, 0, 0, 4},
      {"qwen3-30b-a3b", "h100-sxm", 4, 2, 2, 2, 1, 1, 8, sel, true, opt, unfused, false, 0, 0, "p3d",
       1, 0, 0, 2},
      // Expert TP 1 under TP 2 (Megatron-Core's Qwen3-235B recipe): EP 32 over DP 16 x TP 2.
      {"qwen3-235b-a22b", "h100-sxm", 16, 2, 8, 1, 1, 1, 8, sel, true, no, fused, false, 11, 11,
       "megatron-core", 1, 0, 0, 32, 1},
      // ... with DeepEP's dispatch (Megatron-Core's flex dispatcher).
      {"qwen3-235b-a22b", "h100-sxm", 16, 2, 8, 1, 1, 1, 8, sel, true, no, fused, false, 11, 11,
       "megatron-core", 1, 0, 0, 32, 1, Fp8Recipe::kOff, true},
      // EP with context parallel: EP 8 carved from DP 4 x CP 2 (Megatron-Core's
      // expert-data-parallel group DP*CP*TP/(EP*ETP) = 1).
      {"gpt-oss-120b", "h100-sxm", 4, 1, 2, 1, 1, 1, 8, none, false, no, fused, false, 0, 0,
       "megatron-core", 2, 0, 8192, 8},
      // Context parallel (the K/V ring; Llama 3's 128k stage: TP8 CP16 PP16)
      // and hybrid sharding (ZeRO-1 instances, FSDP2 HSDP with CP, ZeRO-2).
      {"llama-3.1-405b", "h100-sxm", 1, 8, 16, 1, 1, 1, 16, full, true, no, fused, false, 7, 7,
       "megatron-core", 16, 0, 131072},
      {"llama-2-70b", "h100-sxm", 16, 4, 1, 1, 1, 1, 8, sel, true, no, fused, false, 0, 0,
       "megatron-core", 2, 8, 8192},
      {"llama-3-8b", "h100-sxm", 8, 1, 1, 1, 3, 1, 4, sel, false, no, fused, false, 0, 0,
       "torchtitan", 2, 8, 8192},
      {"llama-2-13b", "a100-80gb", 4, 2, 1, 1, 2, 1, 8, none, true, no, fused, false, 0, 0, "p3d",
       2, 4, 4096},
      // FP8 recipes: per-tensor on Hopper (transposed copies), MXFP8 on
      // Blackwell, blockwise with MoE experts, delayed with ZeRO-3 and the
      // unfused core.
      {"llama-2-70b", "h100-sxm", 8, 4, 2, 1, 1, 1, 16, sel, true, no, fused, false, 0, 0,
       "megatron-core", 1, 0, 0, 1, 0, Fp8Recipe::kTensorwise},
      {"llama-3-8b", "b200", 8, 1, 1, 1, 1, 2, 4, none, false, no, fused, false, 0, 0, "nemo",
       1, 0, 0, 1, 0, Fp8Recipe::kMxfp8},
      {"mixtral-8x7b", "h100-sxm", 4, 8, 2, 1, 1, 1, 12, full, true, no, fused, false, 0, 0,
       "megatron-core", 1, 0, 0, 1, 0, Fp8Recipe::kBlockwise},
      {"gpt2-xl", "h100-sxm", 8, 1, 1, 1, 3, 2, 2, none, false, no, unfused, true, 0, 0,
       "megatron-core", 1, 0, 0, 1, 0, Fp8Recipe::kDelayed},
  };
  std::set<std::string> names;
  for (const Case& c : cases) {
    auto zoo = ZooModel(c.model);
    ASSERT_TRUE(zoo.ok()) << c.model;
    const ModelSpec m = *zoo;
    ClusterSpec cluster = CatalogCluster(c.gpu).value();
    Plan p;
    p.dp = c.dp, p.tp = c.tp, p.pp = c.pp, p.vpp = c.vpp, p.zero = c.zero;
    p.micro_batch = c.micro_batch, p.grad_accum = c.grad_accum, p.recompute = c.recompute;
    p.sequence_parallel = c.sp, p.offload = c.offload, p.attention = c.attention;
    p.first_stage_layers = c.first_stage_layers, p.last_stage_layers = c.last_stage_layers;
    p.cp = c.cp, p.zero_shard = c.zero_shard;
    p.ep = c.ep;
    p.etp = c.etp;
    ASSERT_EQ(PipelineSplitRule(p, m.layers), nullptr) << c.model;
    cluster.num_gpus = p.gpus();
    TrainingSpec t;
    ApplyFrameworkProfile(LoadFrameworkProfile(c.framework).value(), &t);
    t.global_batch = p.global_batch();
    t.seq = c.seq > 0 ? c.seq : std::min<int64_t>(2048, m.max_positions);
    t.dropout = c.dropout;
    t.fp8 = c.fp8;
    t.ep_deepep = c.deepep;
    const std::string where =
        std::string(c.model) + " " + PlanSummary(p) + " " + c.framework + " fp8=" + Fp8RecipeName(c.fp8);
    const MemoryEstimate est = EstimateMemory(m, t, cluster, p);
    for (int r : {0, p.pp / 2, p.pp - 1}) {
      const std::vector<DerivedTerm> mem = ExplainMemory(m, t, cluster, p, r);
      ExpectHonest(mem, where, &names);
      double sum = 0;
      for (const DerivedTerm& term : mem) sum += term.part ? term.value : 0;
      EXPECT_NEAR(sum, est.stages[r].memory.total(), 1e-9 * sum) << where << " stage " << r;
      const std::vector<DerivedTerm> host = ExplainHostMemory(m, t, cluster, p, r);
      ExpectHonest(host, where, &names);
      double host_sum = 0;
      for (const DerivedTerm& term : host) host_sum += term.part ? term.value : 0;
      EXPECT_NEAR(host_sum, est.stages[r].host_bytes, 1e-9 * host_sum) << where << " stage " << r;
    }
    auto time = ExplainTime(m, t, cluster, p);
    ASSERT_TRUE(time.ok()) << where << ": " << time.status().ToString();
    ExpectHonest(*time, where, &names);
    auto e = EstimateTime(m, t, cluster, p);
    ASSERT_TRUE(e.ok());
    double parts = 0;
    for (const DerivedTerm& term : *time) parts += term.part ? term.value : 0;
    EXPECT_NEAR(parts, e->time.step_s, 1e-9 * e->time.step_s) << where;
  }
  // The spread reaches every mechanism the models record.
  for (const char* name : {"weights",
                           "params.zero_shard",
                           "ep.all_to_all",
                           "ep.deepep",
                           "layer.ep_comm.forward",
                           "moe.balanced_routing",
                           "layer.moe.sort_bytes",
                           "layer.moe.shuffle",
                           "chunk.layer_forward",
                           "activations.per_layer.scores",
                           "activations.per_layer.op_level",
                           "activations.loss",
                           "buffers.zero3_gather",
                           "buffers.sp_all_gather",
                           "runtime.nccl",
                           "host.master",
                           "layer.tp_comm.backward",
                           "tp.reduce_scatter",
                           "tp.all_reduce",
                           "chunk.forward",
                           "chunk.p2p_send",
                           "chunk.grad_reduce_scatter.exposed",
                           "chunk.dp_exposed",
                           "chunk.grad_accumulation",
                           "chunk.offload_uploads",
                           "tail.grad_all_reduce.exposed",
                           "tail.grad_reduce_scatter.exposed",
                           "tail.param_all_gather",
                           "tail.param_all_gather.exposed",
                           "tail.tied_embedding_all_reduce",
                           "tail.cpu_adam",
                           "tail.offload_h2d_params.exposed",
                           "tail.offload_d2h_gradients.exposed",
                           "tail.optimizer",
                           "layer.fp8.gemms.forward",
                           "layer.fp8.gemms.backward",
                           "layer.fp8.cast_bytes.forward",
                           "layer.fp8.cast.backward",
                           "weights.fp8_copies",
                           "weights.fp8_scaling",
                           "activations.per_layer.fp8",
                           "tail.fp8_weight_cast",
                           "time.bubble",
                           "buffers.cp_ring",
                           "cp.kv_send",
                           "layer.cp_comm.forward",
                           "layer.cp_comm.backward",
                           "time.cp_comm",
                           "tail.replica_all_reduce",
                           "tail.replica",
                           "step"})
    EXPECT_EQ(names.count(name), 1u) << name;
}

}  // namespace
}  // namespace p3d
