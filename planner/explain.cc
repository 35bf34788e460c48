#include "planner/explain.h"

#include <fmt/format.h>

#include <functional>

#include "common/units.h"
#include "simulator/memory_model.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

std::string Bytes(double b) { return fmt::format("{:.3f} GiB", ToGiB(b)); }
std::string Seconds(double s) { return fmt::format("{:.4f} s", s); }

// One recorded term: a part of the total ("*", in `unit`) or one of its inputs
// (a plain number), its formula, the formula with the numbers put in, and what
// it counts.
std::string TermLines(const DerivedTerm& t, const std::function<std::string(double)>& unit) {
  const std::string value = t.part ? unit(t.value) : fmt::format("{:.6g}", t.value);
  std::string out =
      fmt::format("{}{:<34} {:>13}  = {}\n", t.part ? "*" : " ", t.name, value, t.formula);
  const std::string sub = Substituted(t);
  if (sub != t.formula) out += fmt::format("{:<49}  = {}\n", "", sub);
  if (!t.note.empty()) out += fmt::format("{:<49}    ({})\n", "", t.note);
  return out;
}

// How the plan splits its layers over the pipeline, with the Megatron flags
// that give the same split.
std::string SplitKind(const Plan& p, int64_t layers) {
  if (p.uneven_stages())
    return fmt::format(
        "uneven: Megatron{}{}",
        p.first_stage_layers
            ? fmt::format(" --decoder-first-pipeline-num-layers {}", p.first_stage_layers)
            : "",
        p.last_stage_layers ? fmt::format(" --decoder-last-pipeline-num-layers {}", p.last_stage_layers)
                            : "");
  if (!p.accounts_edges()) return "even split";
  const bool emb = p.account_for_embedding, loss = p.account_for_loss;
  std::string chunks;
  if (emb) chunks = fmt::format("first chunk embedding + {}", ChunkLayers(p, layers, 0));
  if (loss)
    chunks += fmt::format("{}last chunk {} + loss", emb ? ", " : "",
                          ChunkLayers(p, layers, p.pp * p.vpp - 1));
  return fmt::format("{} counted as layers: {}; Megatron{}{}",
                     emb && loss ? "embedding and loss" : emb ? "embedding" : "loss", chunks,
                     emb ? " --account-for-embedding-in-pipeline-split" : "",
                     loss ? " --account-for-loss-in-pipeline-split" : "");
}

}  // namespace

std::string ExplainPlan(const PlanRequest& r, const EvaluatedPlan& e, int pick) {
  std::string out =
      fmt::format("=== explain plan #{}: {} (predictions) ===\n", pick, PlanSummary(e.plan));
  out += "\n-- memory per GPU, by pipeline stage --\n";
  const Plan& p = e.plan;
  out += fmt::format("layers per stage: {} ({})\n", StageLayersSummary(p, r.model.layers),
                     SplitKind(p, r.model.layers));
  if (r.model.moe())
    out += fmt::format(
        "experts: {} routed (top-{}){} per MoE layer; EP={} x expert TP={}: {} routed experts per GPU, expert "
        "gradients reduced over {} expert-data-parallel ranks; routing assumed balanced, capacity factor none "
        "(moe.balanced_routing)\n",
        r.model.experts, r.model.experts_per_token,
        r.model.shared_experts > 0 ? fmt::format(" + {} shared", r.model.shared_experts) : "", p.ep, p.expert_tp(),
        r.model.experts / p.ep, p.expert_dp());
  for (const StageMemory& s : e.memory.stages) {
    const char* edges = p.pp == 1             ? " + embedding, LM head"
                        : s.stage == 0        ? " + embedding"
                        : s.stage == p.pp - 1 ? " + LM head"
                                              : "";
    out += fmt::format("stage {:>3}: {:>3} layers{:<22} total {}{}\n", s.stage, s.layers, edges,
                       Bytes(s.memory.total()),
                       s.stage == e.memory.peak_stage ? "   <- peak, decides fit" : "");
  }
  out += fmt::format("\n-- memory terms of the peak stage ({}) --\n", e.memory.peak_stage);
  for (const DerivedTerm& t :
       ExplainMemory(r.model, r.training, r.cluster, e.plan, e.memory.peak_stage))
    out += TermLines(t, Bytes);
  out += fmt::format(" {:<34} {:>13}  vs GPU memory {} -> {}\n", "total (sum of *)",
                     Bytes(e.memory.peak().total()), Bytes(r.cluster.gpu.memory_bytes),
                     e.fits ? "fits" : "DOES NOT FIT");
  int host_stage = 0;  // the stage whose GPUs need the most host memory
  for (const StageMemory& s : e.memory.stages)
    if (s.host_bytes > e.memory.stages[host_stage].host_bytes) host_stage = s.stage;
  const std::vector<DerivedTerm> host =
      ExplainHostMemory(r.model, r.training, r.cluster, e.plan, host_stage);
  if (!host.empty())
    out += fmt::format(
        "\n-- host (CPU) memory with offload: one GPU of stage {}, then the node --\n", host_stage);
  for (const DerivedTerm& t : host) out += TermLines(t, Bytes);

  out += "\n-- step time --\n";
  StatusOr<std::vector<DerivedTerm>> terms = ExplainTime(r.model, r.training, r.cluster, e.plan);
  if (!terms.ok()) {
    out += "time model: " + terms.status().ToString() + "\n";
  } else {
    for (const DerivedTerm& t : *terms) out += TermLines(t, Seconds);
    out += "(* = a part of the step; the starred parts sum to the step time)\n";
  }
  StepClaimCheck floor =
      CheckStepClaim(r.model, r.training, r.cluster, e.time.step_s > 0 ? e.time.step_s : 1.0);
  out += fmt::format(
      "\nFLOP floor: model FLOPs per step / (GPUs x peak) = {:.3f} s: no plan on this cluster can "
      "step faster.\n"
      "predicted step {:.3f} s -> MFU {:.1f}%, HFU {:.1f}%, {:.1f} TFLOP/s per GPU, {:.0f} "
      "tokens/s\n",
      floor.floor_s, e.time.step_s, 100 * e.mfu, 100 * e.hfu, e.tflops_per_gpu, e.tokens_per_s);
  return out;
}

RuleOfThumb CourseRuleOfThumb(const ModelSpec& model) {
  const double billions = model.TotalParams() / 1e9;
  RuleOfThumb rule;
  if (billions < 7) {
    rule.description = "< 7B: data parallel only";
    rule.fixed.tp = 1;
    rule.fixed.pp = 1;
  } else if (billions < 30) {
    rule.description = "7-30B: DP + TP2, ZeRO-2";
    rule.fixed.tp = 2;
    rule.fixed.pp = 1;
    rule.fixed.zero = 2;
  } else if (billions <= 100) {
    rule.description = "30-100B: TP4, PP2-4, ZeRO-3";
    rule.fixed.tp = 4;
    rule.fixed.pp = model.layers % 2 == 0 ? 2 : (model.layers % 4 == 0 ? 4 : 3);
    rule.fixed.zero = 3;
  } else {
    rule.description = "> 100B: TP8, PP4, ZeRO-3 + CPU optimizer offload";
    rule.fixed.tp = 8;
    rule.fixed.pp = 4;
    rule.fixed.zero = 3;
    rule.fixed.offload = Offload::kOptimizer;
  }
  return rule;
}

std::string CompareWithRuleOfThumb(const PlanRequest& r, const EvaluatedPlan& best) {
  RuleOfThumb rule = CourseRuleOfThumb(r.model);
  SearchOptions options;
  options.fixed = rule.fixed;
  options.top_k = 1;
  std::string head = fmt::format("course rule of thumb ({}): ", rule.description);
  StatusOr<SearchResult> res = SearchPlans(r, options);
  if (!res.ok()) return head + "not legal here: " + res.status().message() + "\n";
  if (res->fitting == 0 || res->plans.empty())
    return head + "no plan with these dimensions fits in memory\n";
  const EvaluatedPlan& rp = res->plans.front();
  double ratio = rp.time.step_s / best.time.step_s;
  return head +
         fmt::format(
             "best such plan {} predicted {:.3f} s/step, {:.2f}x {} than p3d's best ({:.3f} s)\n",
             PlanSummary(rp.plan), rp.time.step_s, ratio >= 1 ? ratio : 1 / ratio,
             ratio >= 1 ? "slower" : "faster", best.time.step_s);
}

std::string ExplainStepClaim(const PlanRequest& r, const EvaluatedPlan& e, double claimed) {
  StepClaimCheck c = CheckStepClaim(r.model, r.training, r.cluster, claimed);
  std::string out = fmt::format(
      "claimed step {:.3f} s: the model FLOPs of one step at 100% of the cluster's peak take "
      "{:.3f} s "
      "(FLOP floor), so the claim needs {:.2f}x the cluster's peak FLOP rate: {}.\n",
      claimed, c.floor_s, c.required_peak, c.possible ? "possible in principle" : "IMPOSSIBLE");
  out += fmt::format("p3d predicts {:.3f} s for {} (MFU {:.1f}%).\n", e.time.step_s,
                     PlanSummary(e.plan), 100 * e.mfu);
  return out;
}

}  // namespace p3d
