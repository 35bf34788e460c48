// Plan search: enumerates every legal DP x TP x CP x PP x VPP x ZeRO (x shard
// group) x micro-batch x recompute x SP x offload combination for a request (with one pipeline
// split per PP x VPP, see SearchConstraints), evaluates each with the
// simulator (memory first, time for those that fit) and ranks them.
//
// Ranking: plans that fit come first, by predicted step time (fastest first);
// plans that do not fit follow, by peak-stage memory (smallest first), so a
// user whose request fits nowhere sees the closest miss.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "simulator/evaluated_plan.h"
#include "planner/rules.h"

namespace p3d {

// A dimension left empty is searched; a set one is fixed. The pipeline split
// (uneven stages) is fixed when either stage count is given, the other then
// being 0 (not set), as Megatron reads an absent --decoder-*-pipeline-num-layers;
// left empty, the search offers one split per (PP, VPP): the even one when PP x
// VPP divides the layers, else, when PP does not divide them, the balanced
// uneven split (planner/stage_split.h).
// Context parallel is searched only while every rank keeps at least this many
// tokens of a sequence (S / CP): each ring step then runs attention calls of
// >= 512 tokens per load-balanced chunk, the shortest length the attention
// kernel figures cover (simulator/attention_kernels.cc), and no published
// recipe splits finer (Llama 3: 8k per rank at 128k on CP16). A fixed --cp
// may go below it.
inline constexpr int64_t kMinCpRankTokens = 1024;

struct SearchConstraints {
  std::optional<int> dp, tp, cp, pp, vpp, zero, ep, etp;  // etp: the expert TP (default TP, not searched)
  std::optional<int> zero_shard;  // Plan::zero_shard (0 = the whole DP x CP group)
  std::optional<int> first_stage_layers, last_stage_layers;
  // Plan::account_for_embedding / account_for_loss. Unset: the search offers
  // both (Megatron-Bridge's recipe form) for a VPP no even or balanced split
  // fills, where the framework runs it (neither a limit nor a gap).
  std::optional<bool> account_for_embedding, account_for_loss;
  std::optional<int64_t> micro_batch;
  std::optional<Recompute> recompute;
  std::optional<bool> sequence_parallel;
  std::optional<Offload> offload;
  // Plan::placement; unset: the default, and tp-pp-dp too where the
  // framework runs it and it places the groups differently (PP > 1, DP > 1,
  // no CP or EP).
  std::optional<Placement> placement;
  // Not searched: unset, the framework profile's core (request.framework).
  std::optional<AttentionImpl> attention;
};

struct SearchOptions {
  SearchConstraints fixed;
  RuleOptions rules;
  int top_k = 10;                // fully evaluated plans returned
  bool keep_non_fitting = true;  // return closest misses when nothing fits
  bool with_timeline = false;    // fill EvaluatedPlan::timeline for the returned plans
  // CP is searched while S / CP >= this (kMinCpRankTokens; 0 = every legal CP).
  int64_t min_cp_rank_tokens = kMinCpRankTokens;
  bool runnable_only = false;    // only plans the framework runs today (its "gap" rules,
                                 // common/framework.h); its "limit" rules always apply
  // Called about every 2^16 candidates with (candidates so far); may print progress.
  std::function<void(int64_t)> progress;
  // Called for every legal candidate with its quick evaluation (tests, tools).
  std::function<void(const Plan&, double peak_bytes, bool fits)> on_candidate;
};

struct SearchResult {
  std::vector<EvaluatedPlan> plans;  // ranked, at most top_k
  int64_t candidates = 0;            // legal plans evaluated
  int64_t fitting = 0;               // of which fit in memory
  int64_t bounded = 0;               // of which had their step-time lower bound computed (the
                                     // rest: their cheaper floor could not enter the top K)
  int64_t simulated = 0;             // of which were timed by pipeline simulation (the rest were
                                     // pruned: their step-time lower bound could not enter the top K)
  double seconds = 0;                // wall time of the search
  // Rules that eliminated layouts, with counts, most frequent first ("heads%tp" -> 12).
  std::vector<std::pair<std::string, int64_t>> rejected_by_rule;
};

// Hybrid-sharding shard groups the search offers (a fixed --zero-shard may
// be any legal one): those of Plan::zero_shard * TP GPUs that cover a
// power-of-two number of whole nodes (torchtitan and FSDP's HYBRID_SHARD
// shard within a node or a few; Megatron's distributed-optimizer instances
// likewise), which keeps the plan count within a few times ZeRO's.
bool SearchesShardGroup(int zero_shard, int tp, int gpus_per_node);

// Errors: invalid request (Validate(model) fails, num_gpus < 1, batch/seq < 1)
// -> InvalidArgument naming the field; no legal plan at all -> Infeasible
// naming the rule(s) that eliminated every layout.
StatusOr<SearchResult> SearchPlans(const PlanRequest& request, const SearchOptions& options);

}  // namespace p3d
