#include "common/framework.h"

#include <fmt/format.h>

#include <bit>

#include "common/enum_names.h"
#include "common/plan.h"

namespace p3d {

namespace {

// The value of `values` whose name is `name` (each enum's name/parse pair).
template <typename E, size_t N>
bool ParseName(std::string_view name, const E (&values)[N], const char* (*name_of)(E), E* out) {
  for (E v : values) {
    if (name == name_of(v)) {
      *out = v;
      return true;
    }
  }
  return false;
}

constexpr const char* kRuleIds[kSupportRuleCount] = {"offload-params", "offload-optimizer",
                                                     "offload=>zero1", "zero-with-tp/pp",
                                                     "pp=>zero<=1",    "zero<=1",
                                                     "zero!=1",        "zero!=2",
                                                     "vpp=1",          "tp=>sp",
                                                     "zero0=>1d",      "no-sp",
                                                     "no-selective",   "no-tp",
                                                     "no-pp",          "uneven-stages",
                                                     "no-ep",
                                                     "no-cp",          "no-hsdp",
                                                     "hsdp=>zero1",    "hsdp=>zero3",
                                                     "account-split",  "no-tp-pp-dp"};

}  // namespace

const char* SupportRuleId(SupportRule rule) { return kRuleIds[static_cast<int>(rule)]; }

bool ParseSupportRule(std::string_view id, SupportRule* out) {
  SupportRule all[kSupportRuleCount];
  for (int i = 0; i < kSupportRuleCount; ++i) all[i] = static_cast<SupportRule>(i);
  return ParseName(id, all, SupportRuleId, out);
}

bool Framework::FsdpWraps(const Plan& plan) const {
  return fsdp_copies.has_value() && (plan.zero >= 3 || (plan.zero == 0 && plan.grad_group() == 1));
}

bool Breaks(SupportRule rule, const Plan& p) {
  switch (rule) {
    case SupportRule::kOffloadParams:
      return p.offload == Offload::kOptimizerAndParams;
    case SupportRule::kOffloadOptimizer:
      return p.offload == Offload::kOptimizer;
    case SupportRule::kOffloadNeedsZero1:
      return p.offload != Offload::kNone && p.zero != 1;
    case SupportRule::kZeroWithTpPp:
      return p.zero >= 2 && p.tp * p.pp > 1;
    case SupportRule::kZeroWithPp:
      return p.zero >= 2 && p.pp > 1;
    case SupportRule::kZeroAbove1:
      return p.zero >= 2;
    case SupportRule::kZero1:
      return p.zero == 1;
    case SupportRule::kZero2:
      return p.zero == 2;
    case SupportRule::kInterleaved:
      return p.vpp > 1;
    case SupportRule::kTpWithoutSp:
      return p.tp > 1 && !p.sequence_parallel;
    case SupportRule::kReplicatedMultiDim:
      return p.zero == 0 && p.grad_group() > 1 && p.tp * p.cp * p.pp > 1;
    case SupportRule::kSequenceParallel:
      return p.sequence_parallel;
    case SupportRule::kSelective:
      return p.recompute == Recompute::kSelective;
    case SupportRule::kTensorParallel:
      return p.tp > 1;
    case SupportRule::kPipeline:
      return p.pp > 1;
    case SupportRule::kUnevenStages:
      return p.uneven_stages();
    case SupportRule::kExpertParallel:
      return p.ep > 1;
    case SupportRule::kContextParallel:
      return p.cp > 1;
    case SupportRule::kHybridShard:
      return p.zero_shard > 0;
    case SupportRule::kHybridShardZero1:
      return p.zero_shard > 0 && p.zero != 1;
    case SupportRule::kHybridShardZero3:
      return p.zero_shard > 0 && p.zero != 3;
    case SupportRule::kAccountSplit:
      return p.accounts_edges();
    case SupportRule::kPpBeforeDp:
      return p.placement == Placement::kPpBeforeDp;
  }
  return false;
}

std::string DescribeBreach(SupportRule rule, const Plan& p) {
  switch (rule) {
    case SupportRule::kOffloadParams:
      return "the plan offloads the parameters ('params') to the host";
    case SupportRule::kOffloadOptimizer:
      return "the plan offloads the optimizer alone ('optimizer') to the host";
    case SupportRule::kOffloadNeedsZero1:
      return fmt::format("offload '{}' with ZeRO-{}", OffloadName(p.offload), p.zero);
    case SupportRule::kZeroWithTpPp:
      return fmt::format("ZeRO-{} with tp={} pp={}", p.zero, p.tp, p.pp);
    case SupportRule::kZeroWithPp:
      return fmt::format("ZeRO-{} with PP={}", p.zero, p.pp);
    case SupportRule::kZeroAbove1:
      return fmt::format("ZeRO-{} (gradients or parameters sharded)", p.zero);
    case SupportRule::kZero1:
      return "ZeRO-1 (optimizer states sharded, parameters and gradients not)";
    case SupportRule::kZero2:
      return "ZeRO-2 (gradients sharded, parameters replicated)";
    case SupportRule::kInterleaved:
      return fmt::format("an interleaved pipeline with VPP={}", p.vpp);
    case SupportRule::kTpWithoutSp:
      return fmt::format("TP={} without sequence parallelism", p.tp);
    case SupportRule::kReplicatedMultiDim:
      return fmt::format("plain data parallelism (ZeRO-0) over DP={} with tp={} cp={} pp={}", p.dp,
                         p.tp, p.cp, p.pp);
    case SupportRule::kSequenceParallel:
      return "sequence parallelism";
    case SupportRule::kSelective:
      return "selective recompute";
    case SupportRule::kTensorParallel:
      return fmt::format("tensor parallelism (TP={})", p.tp);
    case SupportRule::kPipeline:
      return fmt::format("pipeline parallelism (PP={})", p.pp);
    case SupportRule::kUnevenStages:
      return fmt::format("uneven pipeline stages (first stage {} / last stage {} layers)",
                         p.first_stage_layers, p.last_stage_layers);
    case SupportRule::kExpertParallel:
      return fmt::format("expert parallelism (EP={})", p.ep);
    case SupportRule::kContextParallel:
      return fmt::format("context parallelism (CP={})", p.cp);
    case SupportRule::kHybridShard:
      return fmt::format("hybrid sharding (ZeRO shard groups of {} of DP x CP = {})", p.zero_shard,
                         p.grad_group());
    case SupportRule::kHybridShardZero1:
    case SupportRule::kHybridShardZero3:
      return fmt::format("hybrid sharding with ZeRO-{}", p.zero);
    case SupportRule::kAccountSplit:
      return fmt::format(
          "the {}{}{} counted as pipeline layers (--account-for-embedding/loss-in-pipeline-split)",
          p.account_for_embedding ? "embedding" : "",
          p.account_for_embedding && p.account_for_loss ? " and the " : "",
          p.account_for_loss ? "loss" : "");
    case SupportRule::kPpBeforeDp:
      return "the tp-pp-dp placement (pipeline stages on neighbouring ranks, Megatron --use-tp-pp-dp-mapping)";
  }
  return "?";
}

constexpr EnumEntry<AttentionKernel> kAttentionKernelNames[] = {
    {AttentionKernel::kCudnn, "cudnn"},
    {AttentionKernel::kFlashAttention2, "flash-attn-2"},
    {AttentionKernel::kFlashAttention3, "flash-attn-3"}};

const char* AttentionKernelName(AttentionKernel k) { return EnumName(kAttentionKernelNames, k); }

bool ParseAttentionKernel(std::string_view name, AttentionKernel* out) {
  return ParseEnum(kAttentionKernelNames, name, out);
}

constexpr EnumEntry<TpOverlap> kTpOverlapNames[] = {{TpOverlap::kNone, "none"},
                                                    {TpOverlap::kAsyncGrad, "async-grad"},
                                                    {TpOverlap::kUserBuffers, "userbuffers"}};

const char* TpOverlapName(TpOverlap o) { return EnumName(kTpOverlapNames, o); }

bool ParseTpOverlap(std::string_view name, TpOverlap* out) {
  return ParseEnum(kTpOverlapNames, name, out);
}

constexpr EnumEntry<SelectiveRecompute> kSelectiveRecomputeNames[] = {
    {SelectiveRecompute::kScores, "scores"},
    {SelectiveRecompute::kCoreAttention, "core-attention"},
    {SelectiveRecompute::kOpLevel, "op-level"}};

const char* SelectiveRecomputeName(SelectiveRecompute s) {
  return EnumName(kSelectiveRecomputeNames, s);
}

bool ParseSelectiveRecompute(std::string_view name, SelectiveRecompute* out) {
  return ParseEnum(kSelectiveRecomputeNames, name, out);
}

constexpr EnumEntry<PpGradOverlap> kPpGradOverlapNames[] = {
    {PpGradOverlap::kAll, "all"},
    {PpGradOverlap::kFirstStage, "first-stage"},
    {PpGradOverlap::kNone, "none"}};

const char* PpGradOverlapName(PpGradOverlap o) { return EnumName(kPpGradOverlapNames, o); }

bool ParsePpGradOverlap(std::string_view name, PpGradOverlap* out) {
  return ParseEnum(kPpGradOverlapNames, name, out);
}

constexpr EnumEntry<Reshard> kReshardNames[] = {
    {Reshard::kAlways, "always"}, {Reshard::kNever, "never"}, {Reshard::kNotWithPp, "not-with-pp"}};

const char* ReshardName(Reshard r) { return EnumName(kReshardNames, r); }

bool ParseReshard(std::string_view name, Reshard* out) {
  return ParseEnum(kReshardNames, name, out);
}

const char* FrameworkRuleBroken(const Framework& f, RuleKind kind, const Plan& plan,
                                std::string* detail) {
  const SupportRules rules = kind == RuleKind::kLimit ? f.limits : f.gaps;
  if (rules == 0) return nullptr;  // p3d has no limits: the search's common case
  for (SupportRules left = rules; left != 0; left &= left - 1) {  // the set bits, in rule order
    const SupportRule rule = static_cast<SupportRule>(std::countr_zero(left));
    if (!Breaks(rule, plan)) continue;
    if (detail)
      *detail = fmt::format("{}: rule {}: {}; {} {}", f.name, SupportRuleId(rule),
                            DescribeBreach(rule, plan), f.name,
                            kind == RuleKind::kLimit ? "cannot run it" : "does not run it yet");
    return SupportRuleId(rule);
  }
  return nullptr;
}

const char* Fp8RuleBroken(const Framework& f, RuleKind kind, Fp8Recipe recipe, std::string* detail) {
  if (recipe == Fp8Recipe::kOff || (f.fp8_recipes & Fp8Bit(recipe))) return nullptr;
  const bool gap = (f.fp8_gaps & Fp8Bit(recipe)) != 0;
  if (gap != (kind == RuleKind::kGap)) return nullptr;
  if (detail) {
    std::string runs;
    for (int i = 1; i < kFp8RecipeCount; ++i)
      if (f.fp8_recipes & Fp8Bit(static_cast<Fp8Recipe>(i)))
        runs += std::string(runs.empty() ? "" : ", ") + Fp8RecipeName(static_cast<Fp8Recipe>(i));
    *detail = fmt::format("{}: rule fp8-recipe: FP8 recipe {}; {} {} (FP8 recipes it runs: {})", f.name,
                          Fp8RecipeName(recipe), f.name, gap ? "does not run it yet" : "cannot run it",
                          runs.empty() ? "none" : runs);
  }
  return "fp8-recipe";
}

}  // namespace p3d
