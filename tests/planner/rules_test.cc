// Every legality rule of planner/rules.h, each with a case that breaks it and
// a check that the error names it.
#include "planner/rules.h"

#include <gtest/gtest.h>

namespace p3d {
namespace {

PlanRequest Llama13bOn(int gpus) {
  PlanRequest r;
  // Llama-2-13B shape: 40 heads (no TP=16), 40 layers.
  r.model = ModelSpec{.name = "llama-2-13b", .arch = Arch::kLlama, .layers = 40, .hidden = 5120,
                      .ffn = 13824, .heads = 40, .kv_heads = 40, .vocab = 32000, .max_positions = 4096};
  r.cluster.num_gpus = gpus;
  r.cluster.node.gpus_per_node = 8;
  r.cluster.network = NodeNetwork(8, {"nvlink4", 450e9, 0.84, 8e-6}, {"ib-ndr", 50e9, 0.9, 15e-6});
  r.training.global_batch = 64;
  r.training.seq = 2048;
  return r;
}

Plan Layout(int dp, int tp, int pp, int64_t mb, int64_t ga) {
  Plan p;
  p.dp = dp;
  p.tp = tp;
  p.pp = pp;
  p.micro_batch = mb;
  p.grad_accum = ga;
  return p;
}

void ExpectRule(const Status& s, const std::string& rule) {
  ASSERT_FALSE(s.ok()) << "expected rule " << rule;
  EXPECT_EQ(s.code(), Status::Code::kInfeasible);
  EXPECT_EQ(s.message().rfind("rule " + rule + ":", 0), 0u) << s.message();
}

// Expert parallelism: each EP rule with a plan that breaks it.
TEST(RulesTest, ExpertParallelRules) {
  PlanRequest moe = Llama13bOn(16);
  moe.model.experts = 8;
  moe.model.experts_per_token = 2;
  Plan ok = Layout(8, 2, 1, 1, 8);
  ok.ep = 4;
  EXPECT_TRUE(CheckPlan(moe, ok).ok()) << CheckPlan(moe, ok).message();
  Plan dense = ok;
  ExpectRule(CheckPlan(Llama13bOn(16), dense), "ep=>moe");
  Plan not_dividing_dp = Layout(4, 2, 2, 1, 16);
  not_dividing_dp.ep = 8;
  ExpectRule(CheckPlan(moe, not_dividing_dp), "dp*cp*tp%(ep*etp)");
  Plan etp1 = not_dividing_dp;  // expert TP 1: EP 8 fits in DP 4 x TP 2
  etp1.etp = 1;
  EXPECT_TRUE(CheckPlan(moe, etp1).ok()) << CheckPlan(moe, etp1).message();
  Plan etp3 = ok;
  etp3.etp = 3;
  ExpectRule(CheckPlan(moe, etp3), "dp*cp*tp%(ep*etp)");
  PlanRequest six = moe;
  six.model.experts = 6;
  ExpectRule(CheckPlan(six, ok), "experts%ep");
  Plan zero2 = ok;
  zero2.zero = 2;
  ExpectRule(CheckPlan(moe, zero2), "ep=>zero!=2");
  Plan zero3 = ok;  // FSDP with the experts sharded over the expert-DP group
  zero3.zero = 3;
  EXPECT_TRUE(CheckPlan(moe, zero3).ok()) << CheckPlan(moe, zero3).message();
  // Hybrid sharding with EP: a ZeRO-1 shard group of 4 of DP 8.
  Plan hsdp = ok;
  hsdp.zero = 1;
  hsdp.zero_shard = 4;
  ExpectRule(CheckPlan(moe, hsdp), "ep=>zero!=2");
  // EP carved from DP x CP x TP: EP 8 over DP 4 x CP 2 (TP 2) is legal, not without CP.
  Plan with_cp = Layout(4, 2, 1, 1, 16);
  with_cp.cp = 2;
  with_cp.ep = 8;
  EXPECT_TRUE(CheckPlan(moe, with_cp).ok()) << CheckPlan(moe, with_cp).message();
  EXPECT_EQ(with_cp.expert_dp(), 1);  // DP*CP*TP/(EP*ETP) = 4*2*2/(8*2)
  PlanRequest eight = moe;
  eight.cluster.num_gpus = 8;
  Plan no_cp = with_cp;
  no_cp.cp = 1;
  ExpectRule(CheckPlan(eight, no_cp), "dp*cp*tp%(ep*etp)");
  Plan zero_ep = ok;
  zero_ep.ep = 0;
  ExpectRule(CheckPlan(moe, zero_ep), "degrees>=1");
}

TEST(RulesTest, LegalPlanPasses) {
  EXPECT_TRUE(CheckPlan(Llama13bOn(16), Layout(4, 2, 2, 2, 8)).ok());
}

TEST(RulesTest, EachRuleHasAFailingCase) {
  PlanRequest r = Llama13bOn(16);
  ExpectRule(CheckPlan(r, Layout(0, 2, 2, 1, 1)), "degrees>=1");
  ExpectRule(CheckPlan(r, Layout(4, 2, 2, 0, 1)), "micro_batch>=1");
  ExpectRule(CheckPlan(r, Layout(4, 2, 2, 1, 0)), "grad_accum>=1");
  ExpectRule(CheckPlan(r, Layout(2, 2, 2, 4, 8)), "gpus=dp*tp*cp*pp");
  ExpectRule(CheckPlan(r, Layout(1, 16, 1, 4, 16)), "heads%tp");  // published.md sec 4: 40 heads forbid TP=16
  PlanRequest gqa = r;
  gqa.model.kv_heads = 4;
  ExpectRule(CheckPlan(gqa, Layout(2, 8, 1, 4, 8)), "kv_heads%tp");
  PlanRequest odd_ffn = r;
  odd_ffn.model.heads = odd_ffn.model.kv_heads = 64;
  odd_ffn.model.hidden = 8192;
  odd_ffn.model.ffn = 13825;
  ExpectRule(CheckPlan(odd_ffn, Layout(8, 2, 1, 1, 8)), "ffn%tp");
  // The tp-pp-dp placement takes no CP or EP (Megatron's --use-tp-pp-dp-mapping).
  Plan pp_first = Layout(2, 2, 4, 4, 8);
  pp_first.placement = Placement::kPpBeforeDp;
  EXPECT_TRUE(CheckPlan(r, pp_first).ok()) << CheckPlan(r, pp_first).message();
  Plan pp_first_cp = Layout(2, 2, 2, 4, 8);
  pp_first_cp.placement = Placement::kPpBeforeDp;
  pp_first_cp.cp = 2;
  ExpectRule(CheckPlan(r, pp_first_cp), "tp-pp-dp=>cp=1,ep=1");
  // The innermost network tier bounds TP: NVLink domains of 4 GPUs refuse TP 8.
  PlanRequest small_nodes = r;
  small_nodes.cluster.network[0].gpus = 4;
  ExpectRule(CheckPlan(small_nodes, Layout(2, 8, 1, 4, 8)), "tp<=innermost_tier");
  RuleOptions across;
  across.allow_tp_across_nodes = true;
  EXPECT_TRUE(CheckPlan(small_nodes, Layout(2, 8, 1, 4, 8), across).ok());
  // It is the NVLink domain, not the host: trays of 4 GPUs in a 72-GPU NVLink
  // domain (GB200 NVL72) take TP 8 ...
  PlanRequest nvl = r;
  nvl.cluster.node.gpus_per_node = 4;
  nvl.cluster.network[0].gpus = 72;
  EXPECT_TRUE(CheckPlan(nvl, Layout(2, 8, 1, 4, 8)).ok());
  // ... and a domain of 2 refuses it, naming the tier.
  nvl.cluster.network[0].gpus = 2;
  Status two = CheckPlan(nvl, Layout(2, 8, 1, 4, 8));
  ExpectRule(two, "tp<=innermost_tier");
  EXPECT_NE(two.message().find("nvlink4, 2 GPUs each"), std::string::npos) << two.message();
  ExpectRule(CheckPlan(Llama13bOn(48), Layout(1, 1, 48, 1, 64)), "layers%pp");
  Plan vpp3 = Layout(4, 2, 2, 2, 8);
  vpp3.vpp = 3;  // 40 layers / (2*3) is not whole
  ExpectRule(CheckPlan(r, vpp3), "layers%(pp*vpp)");
  Plan vpp_no_pp = Layout(8, 2, 1, 1, 8);
  vpp_no_pp.vpp = 2;
  ExpectRule(CheckPlan(r, vpp_no_pp), "vpp>1=>pp>1");
  Plan vpp_odd_m = Layout(4, 1, 4, 16, 1);
  vpp_odd_m.vpp = 2;
  ExpectRule(CheckPlan(r, vpp_odd_m), "vpp>1=>m%pp");
  ExpectRule(CheckPlan(r, Layout(4, 2, 2, 3, 5)), "batch=mb*ga*dp");
  Plan zero4 = Layout(4, 2, 2, 2, 8);
  zero4.zero = 4;
  ExpectRule(CheckPlan(r, zero4), "zero<=3");
  Plan zero_dp1 = Layout(1, 8, 2, 4, 16);
  zero_dp1.zero = 1;
  ExpectRule(CheckPlan(r, zero_dp1), "zero>0=>dp>1");
  Plan sp_tp1 = Layout(8, 1, 2, 2, 4);
  sp_tp1.sequence_parallel = true;
  ExpectRule(CheckPlan(r, sp_tp1), "sp=>tp>1");
  PlanRequest gpt2 = r;
  gpt2.model.arch = Arch::kGpt2;
  gpt2.model.max_positions = 1024;
  ExpectRule(CheckPlan(gpt2, Layout(4, 2, 2, 2, 8)), "seq<=positions");
  Plan offload_zero0 = Layout(4, 2, 2, 2, 8);
  offload_zero0.offload = Offload::kOptimizer;
  ExpectRule(CheckPlan(r, offload_zero0), "offload=>zero>=1");
  Plan params_zero2 = Layout(4, 2, 2, 2, 8);
  params_zero2.zero = 2;
  params_zero2.offload = Offload::kOptimizerAndParams;
  ExpectRule(CheckPlan(r, params_zero2), "offload_params=>zero3");
  PlanRequest fp8_a100 = r;
  fp8_a100.cluster.gpu.name = "a100-80gb";  // fp8_peak_flops = 0: no FP8 tensor cores
  fp8_a100.training.fp8 = Fp8Recipe::kDelayed;
  ExpectRule(CheckPlan(fp8_a100, Layout(4, 2, 2, 2, 8)), "fp8=>fp8_tensor_cores");
  PlanRequest mxfp8_h100 = r;
  mxfp8_h100.cluster.gpu.fp8_peak_flops = 1979e12;  // Hopper: FP8, but no MX block scaling
  mxfp8_h100.training.fp8 = Fp8Recipe::kMxfp8;
  ExpectRule(CheckPlan(mxfp8_h100, Layout(4, 2, 2, 2, 8)), "mxfp8=>block_scaled_tensor_cores");
  mxfp8_h100.cluster.gpu.mxfp8 = true;  // Blackwell
  EXPECT_TRUE(CheckPlan(mxfp8_h100, Layout(4, 2, 2, 2, 8)).ok());
}

Plan Uneven(Plan p, int first, int last, int vpp = 1) {
  p.first_stage_layers = first;
  p.last_stage_layers = last;
  p.vpp = vpp;
  return p;
}

// Megatron's uneven stages on 40 layers: the middle stages share what the
// first/last counts leave, evenly; with VPP every stage's count is a multiple of it.
TEST(RulesTest, UnevenStages) {
  PlanRequest r = Llama13bOn(48);
  const Plan pp6 = Layout(1, 8, 6, 1, 64);  // 40 layers do not divide over PP=6
  ExpectRule(CheckPlan(r, pp6), "layers%pp");
  EXPECT_TRUE(CheckPlan(r, Uneven(pp6, 4, 4)).ok());   // 4 | 8 x 4 | 4
  EXPECT_TRUE(CheckPlan(r, Uneven(pp6, 5, 0)).ok());   // 5 | 7 x 5 (the last stage is a middle one)
  EXPECT_TRUE(CheckPlan(r, Uneven(pp6, 0, 5)).ok());   // 7 x 5 | 5
  ExpectRule(CheckPlan(r, Uneven(pp6, 41, 0)), "stage_layers<=layers");
  ExpectRule(CheckPlan(r, Uneven(pp6, -1, 0)), "stage_layers<=layers");
  ExpectRule(CheckPlan(r, Uneven(pp6, 4, 5)), "middle%stages");  // 31 over 4 middle stages
  ExpectRule(CheckPlan(r, Uneven(pp6, 20, 18)), "middle>=1");   // 2 layers for 4 middle stages
  PlanRequest r8 = Llama13bOn(8);
  ExpectRule(CheckPlan(r8, Uneven(Layout(1, 8, 1, 1, 64), 4, 0)), "uneven=>pp>1");
  PlanRequest r16 = Llama13bOn(16);
  const Plan pp2 = Layout(1, 8, 2, 1, 64);
  ExpectRule(CheckPlan(r16, Uneven(pp2, 19, 21)), "first+last=>pp>=3");
  EXPECT_TRUE(CheckPlan(r16, Uneven(pp2, 19, 0)).ok());  // 19 | 21
  // VPP 2 (48 micro-batches: interleaving needs m % PP == 0).
  PlanRequest r48 = r;
  r48.training.global_batch = 48;
  const Plan pp6m48 = Layout(1, 8, 6, 1, 48);
  EXPECT_TRUE(CheckPlan(r48, Uneven(pp6m48, 6, 10, 2)).ok());           // 6 | 6 x 4 | 10
  ExpectRule(CheckPlan(r48, Uneven(pp6m48, 5, 7, 2)), "uneven%vpp");   // odd first and last
  ExpectRule(CheckPlan(r48, Uneven(pp6m48, 6, 6, 2)), "uneven%vpp");   // 7 per middle stage
  // Each rule's message names the counts.
  EXPECT_NE(CheckPlan(r, Uneven(pp6, 4, 5)).message().find("31 remaining layers"), std::string::npos);
}

// DeepSpeed's ZeRO-Offload: optimizer offload under ZeRO 1-3, parameter
// offload under ZeRO-3 only; with DP = 1 ZeRO is listed only where offload
// makes it a different plan (ZeRO-1/2 + optimizer, ZeRO-3 + params).
TEST(RulesTest, OffloadStages) {
  PlanRequest r = Llama13bOn(16);
  for (int zero = 1; zero <= 3; ++zero) {
    Plan p = Layout(4, 2, 2, 2, 8);
    p.zero = zero;
    p.offload = Offload::kOptimizer;
    EXPECT_TRUE(CheckPlan(r, p).ok()) << PlanSummary(p);
    p.offload = Offload::kOptimizerAndParams;
    EXPECT_EQ(CheckPlan(r, p).ok(), zero == 3) << PlanSummary(p);
  }
  PlanRequest one_node = Llama13bOn(8);
  Plan dp1 = Layout(1, 8, 1, 1, 64);
  for (int zero = 1; zero <= 3; ++zero) {
    dp1.zero = zero;
    dp1.offload = Offload::kNone;
    ExpectRule(CheckPlan(one_node, dp1), "zero>0=>dp>1");
    dp1.offload = Offload::kOptimizer;
    if (zero <= 2)
      EXPECT_TRUE(CheckPlan(one_node, dp1).ok()) << PlanSummary(dp1);
    else
      ExpectRule(CheckPlan(one_node, dp1), "zero>0=>dp>1");  // same as ZeRO-2 at DP=1
    dp1.offload = Offload::kOptimizerAndParams;
    if (zero == 3) EXPECT_TRUE(CheckPlan(one_node, dp1).ok()) << PlanSummary(dp1);
  }
}

// Context parallel: S/(2 x CP) load-balanced chunks, the fused core; the CP
// ranks share DP's sequences (batch identity over DP alone) and its ZeRO group.
TEST(RulesTest, ContextParallel) {
  PlanRequest r = Llama13bOn(16);
  Plan p = Layout(2, 2, 2, 4, 8);  // 16 GPUs with CP2
  p.cp = 2;
  EXPECT_TRUE(CheckPlan(r, p).ok()) << CheckPlan(r, p).message();
  p.cp = 4;
  ExpectRule(CheckPlan(r, p), "gpus=dp*tp*cp*pp");
  p.cp = 2;
  PlanRequest odd = r;
  odd.training.seq = 2050;  // 2050 % 4 != 0
  ExpectRule(CheckPlan(odd, p), "seq%(2*cp)");
  p.attention = AttentionImpl::kUnfused;
  ExpectRule(CheckPlan(r, p), "cp=>fused");
  p.attention = AttentionImpl::kFused;
  // ZeRO shards over DP x CP: legal at DP = 1 with CP > 1.
  Plan cp_only = Layout(1, 2, 2, 8, 8);
  cp_only.cp = 4;
  cp_only.zero = 1;
  EXPECT_TRUE(CheckPlan(r, cp_only).ok()) << CheckPlan(r, cp_only).message();
  cp_only.cp = 1;
  cp_only.dp = 1;
  cp_only.tp = 8;
  ExpectRule(CheckPlan(r, cp_only), "zero>0=>dp>1");
}

// Hybrid sharding: a shard group needs ZeRO >= 1 and is a proper divisor of DP x CP.
TEST(RulesTest, HybridShard) {
  PlanRequest r = Llama13bOn(16);
  Plan p = Layout(4, 2, 1, 2, 8);
  p.cp = 2;  // DP x CP = 8
  p.zero = 3;
  p.zero_shard = 4;
  EXPECT_TRUE(CheckPlan(r, p).ok()) << CheckPlan(r, p).message();
  EXPECT_EQ(p.zero_shards(), 4);
  EXPECT_EQ(p.zero_replicas(), 2);
  p.zero = 0;
  ExpectRule(CheckPlan(r, p), "zero_shard=>zero>=1");
  p.zero = 1;
  for (int bad : {1, 3, 8, 16}) {
    p.zero_shard = bad;
    ExpectRule(CheckPlan(r, p), "zero_shard|dp*cp");
  }
}

}  // namespace
}  // namespace p3d
