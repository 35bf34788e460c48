#include "common/plan.h"

#include <fmt/format.h>

#include "common/enum_names.h"
#include "common/named_rule.h"

namespace p3d {
namespace {

constexpr EnumEntry<Recompute> kRecomputeNames[] = {
    {Recompute::kNone, "none"}, {Recompute::kSelective, "selective"}, {Recompute::kFull, "full"}};
constexpr EnumEntry<Offload> kOffloadNames[] = {{Offload::kNone, "none"},
                                                {Offload::kOptimizer, "optimizer"},
                                                {Offload::kOptimizerAndParams, "params"}};
constexpr EnumEntry<AttentionImpl> kAttentionImplNames[] = {{AttentionImpl::kFused, "fused"},
                                                            {AttentionImpl::kUnfused, "unfused"}};

}  // namespace

const char* RecomputeName(Recompute r) { return EnumName(kRecomputeNames, r); }

bool ParseRecompute(const std::string& name, Recompute* out) {
  return ParseEnum(kRecomputeNames, name, out);
}

const char* OffloadName(Offload o) { return EnumName(kOffloadNames, o); }

constexpr EnumEntry<Placement> kPlacementNames[] = {{Placement::kDpBeforePp, "tp-cp-ep-dp-pp"},
                                                    {Placement::kPpBeforeDp, "tp-pp-dp"}};
const char* PlacementName(Placement p) { return EnumName(kPlacementNames, p); }
bool ParsePlacement(const std::string& name, Placement* out) { return ParseEnum(kPlacementNames, name, out); }

bool ParseOffload(const std::string& name, Offload* out) {
  return ParseEnum(kOffloadNames, name, out);
}

const char* AttentionImplName(AttentionImpl a) { return EnumName(kAttentionImplNames, a); }

bool ParseAttentionImpl(const std::string& name, AttentionImpl* out) {
  return ParseEnum(kAttentionImplNames, name, out);
}

namespace {

// Stages whose count is not set: they share the layers the set ones leave.
int MiddleStages(const Plan& p) {
  return p.pp - (p.first_stage_layers != 0) - (p.last_stage_layers != 0);
}

int64_t MiddleStageLayers(const Plan& p, int64_t layers) {
  const int middle = MiddleStages(p);
  return middle > 0 ? (layers - p.first_stage_layers - p.last_stage_layers) / middle : 0;
}

// Megatron-Core counts an accounted embedding and loss as layers of the split.
int64_t SplitUnits(const Plan& p, int64_t layers) {
  return layers + (p.account_for_embedding ? 1 : 0) + (p.account_for_loss ? 1 : 0);
}

}  // namespace

int64_t ChunkLayers(const Plan& p, int64_t layers, int v) {
  if (!p.accounts_edges()) return StageLayers(p, layers, v % p.pp) / p.vpp;
  const int chunks = p.pp * p.vpp;
  return SplitUnits(p, layers) / chunks - (p.account_for_embedding && v == 0 ? 1 : 0) -
         (p.account_for_loss && v == chunks - 1 ? 1 : 0);
}

int64_t StageLayers(const Plan& p, int64_t layers, int stage) {
  if (p.accounts_edges())  // the sum of its chunks' ChunkLayers
    return p.vpp * (SplitUnits(p, layers) / (p.pp * p.vpp)) -
           (p.account_for_embedding && stage == 0 ? 1 : 0) -
           (p.account_for_loss && stage == p.pp - 1 ? 1 : 0);
  if (stage == 0 && p.first_stage_layers != 0) return p.first_stage_layers;
  if (stage == p.pp - 1 && p.last_stage_layers != 0) return p.last_stage_layers;
  return MiddleStageLayers(p, layers);
}

const char* PipelineSplitRule(const Plan& p, int64_t layers, std::string* detail) {
  const int64_t first = p.first_stage_layers, last = p.last_stage_layers;
  const int64_t pp = p.pp, chunks = pp * p.vpp;
  if (p.accounts_edges()) {
    // Megatron-Core's TransformerConfig: the accounting applies only without
    // set first/last stage counts (an elif after their checks), and the
    // layers plus the accounted embedding and loss divide over PP, then each
    // rank's share over VPP.
    if (p.uneven_stages())
      return RuleFailed(detail, "account=>even", [&] {
        return std::string(
            "the embedding/loss pipeline accounting (--account-for-embedding/loss-in-pipeline-split) "
            "and set first/last stage layers exclude each other (Megatron-Core ignores the "
            "accounting when either stage count is set)");
      });
    if (pp == 1)
      return RuleFailed(detail, "account=>pp>1", [&] {
        return std::string(
            "counting the embedding/loss as pipeline layers needs a pipeline (PP > 1), got PP=1");
      });
    if (SplitUnits(p, layers) % chunks != 0)
      return RuleFailed(detail, "(layers+edges)%(pp*vpp)", [&] {
        return fmt::format(
            "{} layers + {} accounted (embedding/loss) = {} are not divisible by PP{} x VPP{} = {} "
            "(Megatron-Core's TransformerConfig)",
            layers, SplitUnits(p, layers) - layers, SplitUnits(p, layers), pp, p.vpp, chunks);
      });
    return nullptr;
  }
  if (!p.uneven_stages()) {
    if (layers % pp != 0)
      return RuleFailed(detail, "layers%pp", [&] {
        return fmt::format(
            "{} layers are not divisible by PP={} (set the first/last stage's layers for "
            "uneven stages: --first-stage-layers / --last-stage-layers)",
            layers, pp);
      });
    if (layers % chunks != 0)
      return RuleFailed(detail, "layers%(pp*vpp)", [&] {
        return fmt::format("{} layers are not divisible by PP{} x VPP{} = {}", layers, pp, p.vpp,
                           chunks);
      });
    return nullptr;
  }
  if (first < 0 || last < 0 || first > layers || last > layers)
    return RuleFailed(detail, "stage_layers<=layers", [&] {
      return fmt::format(
          "the first and last stage's layers must be in 0..{} (0 = not set), got {} and {}", layers,
          first, last);
    });
  if (pp == 1)
    return RuleFailed(detail, "uneven=>pp>1", [&] {
      return std::string("the first/last stage's layers need a pipeline (PP > 1), got PP=1");
    });
  if (first != 0 && last != 0 && pp == 2)
    return RuleFailed(detail, "first+last=>pp>=3", [&] {
      return fmt::format(
          "with both the first ({}) and the last ({}) stage's layers set, PP=2 leaves no middle "
          "stage (Megatron divides the remaining layers by PP-2); set only one of them",
          first, last);
    });
  const int middle = MiddleStages(p);
  const int64_t rest = layers - first - last;
  if (rest < middle)
    return RuleFailed(detail, "middle>=1", [&] {
      return fmt::format(
          "{} layers minus first {} and last {} leave {} for {} middle stages: each needs at least "
          "one",
          layers, first, last, rest, middle);
    });
  if (rest % middle != 0)
    return RuleFailed(detail, "middle%stages", [&] {
      return fmt::format(
          "the {} remaining layers do not split evenly over the {} middle stages (Megatron: the "
          "number of layers at the middle stages must be divisible by the middle pipeline size)",
          rest, middle);
    });
  const int64_t per_middle = rest / middle;
  if (first % p.vpp != 0 || last % p.vpp != 0 || per_middle % p.vpp != 0)
    return RuleFailed(detail, "uneven%vpp", [&] {
      return fmt::format(
          "with VPP={} every stage's layers must be a multiple of VPP (Megatron-Core's "
          "TransformerConfig), got first {}, middle {}, last {}",
          p.vpp, first, per_middle, last);
    });
  return nullptr;
}

std::string StageLayersSummary(const Plan& p, int64_t layers) {
  if (p.accounts_edges()) {
    const int64_t first = StageLayers(p, layers, 0), last = StageLayers(p, layers, p.pp - 1);
    const std::string middle =
        p.pp == 2 ? ","
                  : fmt::format(",{}{},", StageLayers(p, layers, 1),
                                p.pp > 3 ? fmt::format("x{}", p.pp - 2) : "");
    return fmt::format("{}{}{}", first, middle, last);
  }
  const int middle = MiddleStages(p);
  std::string out = p.first_stage_layers != 0 ? fmt::format("{}", p.first_stage_layers) : "";
  if (middle > 0) out += (out.empty() ? "" : ",") + std::to_string(MiddleStageLayers(p, layers));
  if (middle > 1) out += fmt::format("x{}", middle);
  if (p.last_stage_layers != 0) out += fmt::format(",{}", p.last_stage_layers);
  return out;
}

std::string PlanSummary(const Plan& p) {
  std::string stages;
  if (p.first_stage_layers != 0) stages += fmt::format(" first-stage={}", p.first_stage_layers);
  if (p.last_stage_layers != 0) stages += fmt::format(" last-stage={}", p.last_stage_layers);
  if (p.accounts_edges())
    stages += fmt::format(" account={}{}{}", p.account_for_embedding ? "embedding" : "",
                          p.account_for_embedding && p.account_for_loss ? "," : "",
                          p.account_for_loss ? "loss" : "");
  if (p.ep > 1) stages += fmt::format(" EP{}", p.ep);
  if (p.etp > 0 && p.etp != p.tp) stages += fmt::format(" ETP{}", p.etp);
  if (p.placement != Placement::kDpBeforePp) stages += fmt::format(" placement={}", PlacementName(p.placement));
  const std::string cp = p.cp > 1 ? fmt::format("CP{} ", p.cp) : "";
  const std::string shard = p.zero_shard > 0 ? fmt::format("/shard{}", p.zero_shard) : "";
  return fmt::format(
      "DP{} TP{} {}PP{} VPP{} ZeRO-{}{} mb{} ga{} rc={}{}{}{}{}", p.dp, p.tp, cp, p.pp, p.vpp, p.zero,
      shard, p.micro_batch, p.grad_accum, RecomputeName(p.recompute), p.sequence_parallel ? " SP" : "",
      p.offload == Offload::kNone ? "" : std::string(" offload=") + OffloadName(p.offload),
      p.attention == AttentionImpl::kFused ? "" : " attn=unfused", stages);
}

}  // namespace p3d
