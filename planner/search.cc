#include "planner/search.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <map>
#include <numeric>

#include "planner/evaluator.h"
#include "planner/stage_split.h"

namespace p3d {
namespace {

std::vector<int64_t> Divisors(int64_t n) {
  std::vector<int64_t> small, large;
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d != 0) continue;
    small.push_back(d);
    if (d != n / d) large.push_back(n / d);
  }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}

Status ValidateRequest(const PlanRequest& r) {
  P3D_RETURN_IF_ERROR(Validate(r.model));
  if (r.cluster.num_gpus < 1)
    return Status::InvalidArgument(fmt::format("--gpus must be >= 1, got {}", r.cluster.num_gpus));
  if (r.cluster.num_gpus > (1 << 24))
    return Status::InvalidArgument(fmt::format("--gpus {} is beyond what p3d plans for (16M)", r.cluster.num_gpus));
  if (r.cluster.node.gpus_per_node < 1)
    return Status::InvalidArgument("--gpus-per-node must be >= 1");
  if (r.training.global_batch < 1)
    return Status::InvalidArgument(fmt::format("--global-batch must be >= 1, got {}", r.training.global_batch));
  if (r.training.global_batch > (int64_t{1} << 32))
    return Status::InvalidArgument(fmt::format("--global-batch {} is implausibly large", r.training.global_batch));
  if (r.training.seq < 1 || r.training.seq > (int64_t{1} << 24))
    return Status::InvalidArgument(fmt::format("--seq must be in 1..16M, got {}", r.training.seq));
  if (r.cluster.gpu.memory_bytes <= 0) return Status::InvalidArgument("GPU memory must be positive");
  return Status::Ok();
}

struct Candidate {
  Plan plan;
  PlanEvaluator::Quick quick;
  double floor = 0;  // TimeModel::StepFloor, for fitting plans
};

// A candidate of the top K, with its simulation (kept for the output).
struct Ranked {
  Candidate c;
  std::optional<StatusOr<TimeEstimate>> time;
};

bool Better(const Candidate& a, const Candidate& b) {
  if (a.quick.fits != b.quick.fits) return a.quick.fits;
  if (a.quick.fits && a.quick.step_s != b.quick.step_s) return a.quick.step_s < b.quick.step_s;
  return a.quick.peak_bytes < b.quick.peak_bytes;
}
bool BetterRanked(const Ranked& a, const Ranked& b) { return Better(a.c, b.c); }

// Layouts each rule eliminated. Rule ids are string literals: counted by
// pointer first (no allocation per rejection), merged by name at the end.
class RuleCounts {
 public:
  void Add(const char* rule) {
    for (auto& [id, count] : counts_)
      if (id == rule) {
        ++count;
        return;
      }
    counts_.emplace_back(rule, 1);
  }
  // (rule id, count), most frequent first.
  std::vector<std::pair<std::string, int64_t>> Sorted() const {
    std::map<std::string, int64_t> by_name;
    for (const auto& [id, count] : counts_) by_name[id] += count;
    std::vector<std::pair<std::string, int64_t>> out(by_name.begin(), by_name.end());
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    return out;
  }

 private:
  std::vector<std::pair<const char*, int64_t>> counts_;
};

template <typename T>
bool Allowed(const std::optional<T>& fixed, T value) {
  return !fixed || *fixed == value;
}

// One pipeline split the search offers for a PP.
struct SplitOption {
  int vpp = 1;
  int first = 0, last = 0;  // Plan::first_stage_layers, last_stage_layers
  bool embedding = false, loss = false;  // Plan::account_for_embedding, account_for_loss
};

// The accounted splits (Plan::account_for_embedding / account_for_loss) of
// `pp`: every VPP whose PP x VPP chunks divide the layers plus the accounted
// embedding and loss, or VPP 1 alone when none does (the rules then name it).
std::vector<SplitOption> AccountedSplits(int64_t layers, int pp, bool embedding, bool loss) {
  std::vector<SplitOption> options;
  const int64_t units = layers + (embedding ? 1 : 0) + (loss ? 1 : 0);
  if (units % pp == 0)
    for (int64_t vpp : Divisors(units / pp))
      options.push_back({static_cast<int>(vpp), 0, 0, embedding, loss});
  if (options.empty()) options.push_back({1, 0, 0, embedding, loss});
  return options;
}

// The (VPP, split) pairs offered for `pp`, VPP ascending (the first has VPP 1;
// its split is what the layout-level rules are checked with). A fixed split
// comes with every VPP that divides all its stage sizes, or alone when it
// breaks a rule (the rules then name it); else the even split with every VPP
// dividing L/PP; else, PP not dividing L, the balanced split of every VPP
// that divides L and has one. A fixed accounting (--account-for-embedding/
// loss-in-pipeline-split) gives its AccountedSplits; where `accounted` (the
// framework runs it), the embedding-and-loss accounted split is added for
// every VPP the splits above leave out (PP > 1). `weights` is computed on first use.
std::vector<SplitOption> SplitOptions(const PlanRequest& request, int pp, const SearchConstraints& fx,
                                      bool accounted, std::optional<StageEdgeWeights>& weights) {
  const int64_t layers = request.model.layers;
  if (fx.account_for_embedding.value_or(false) || fx.account_for_loss.value_or(false))
    return AccountedSplits(layers, pp, fx.account_for_embedding.value_or(false),
                           fx.account_for_loss.value_or(false));
  std::vector<SplitOption> options;
  const SplitOption fixed{1, fx.first_stage_layers.value_or(0), fx.last_stage_layers.value_or(0)};
  if (fixed.first != 0 || fixed.last != 0) {
    Plan p;
    p.pp = pp;
    p.first_stage_layers = fixed.first;
    p.last_stage_layers = fixed.last;
    if (PipelineSplitRule(p, layers) != nullptr) return {fixed};
    int64_t sizes = 0;  // gcd of the stage sizes
    for (int stage : {0, pp / 2, pp - 1}) sizes = std::gcd(sizes, StageLayers(p, layers, stage));
    for (int64_t vpp : Divisors(sizes)) options.push_back({static_cast<int>(vpp), fixed.first, fixed.last});
  } else if (layers % pp == 0) {
    for (int64_t vpp : Divisors(layers / pp)) options.push_back({static_cast<int>(vpp), 0, 0});
  } else {
    if (!weights)
      weights = EdgeWeights(request, fx.attention.value_or(request.framework.attention));
    for (int64_t vpp : Divisors(layers)) {
      if (vpp * pp > layers) break;
      if (std::optional<StageSplit> s = BalancedStageSplit(layers, pp, static_cast<int>(vpp), *weights))
        options.push_back({static_cast<int>(vpp), s->first, s->last});
    }
  }
  if (accounted && pp > 1 && fixed.first == 0 && fixed.last == 0 && !fx.account_for_embedding &&
      !fx.account_for_loss) {
    for (const SplitOption& a : AccountedSplits(layers, pp, true, true)) {
      const bool covered = std::any_of(options.begin(), options.end(),
                                       [&](const SplitOption& o) { return o.vpp == a.vpp; });
      if (!covered && (layers + 2) % (int64_t{pp} * a.vpp) == 0) options.push_back(a);
    }
    std::sort(options.begin(), options.end(),
              [](const SplitOption& a, const SplitOption& b) { return a.vpp < b.vpp; });
  }
  return options;
}

// The shard groups offered for a layout: 0 (the whole DP x CP group), then
// the proper divisors SearchesShardGroup keeps; a fixed one alone.
std::vector<int> ShardOptions(const Plan& layout, const SearchConstraints& fx, int gpus_per_node) {
  if (fx.zero_shard) return {*fx.zero_shard};
  std::vector<int> shards = {0};
  const int group = layout.grad_group();
  for (int64_t s : Divisors(group))
    if (s >= 2 && s < group && SearchesShardGroup(static_cast<int>(s), layout.tp, gpus_per_node))
      shards.push_back(static_cast<int>(s));
  return shards;
}

}  // namespace

bool SearchesShardGroup(int zero_shard, int tp, int gpus_per_node) {
  const int64_t span = int64_t{zero_shard} * tp;
  if (gpus_per_node < 1 || span % gpus_per_node != 0) return false;
  const int64_t nodes = span / gpus_per_node;
  return (nodes & (nodes - 1)) == 0;
}

StatusOr<SearchResult> SearchPlans(const PlanRequest& request, const SearchOptions& options) {
  P3D_RETURN_IF_ERROR(ValidateRequest(request));
  auto start = std::chrono::steady_clock::now();
  const SearchConstraints& fx = options.fixed;
  const int gpus = request.cluster.num_gpus;
  const ModelSpec& m = request.model;

  PlanEvaluator evaluator(request);
  std::optional<StageEdgeWeights> weights;  // for balanced splits, computed on first use
  // The search offers the accounted split where the framework runs it.
  Plan accounting;
  accounting.account_for_embedding = accounting.account_for_loss = true;
  const bool accounted =
      FrameworkRuleBroken(request.training.framework, RuleKind::kLimit, accounting) == nullptr &&
      FrameworkRuleBroken(request.training.framework, RuleKind::kGap, accounting) == nullptr;
  SearchResult result;
  RuleCounts rejected;
  auto reject = [&](const char* rule) { rejected.Add(rule); };

  const size_t k = static_cast<size_t>(std::max(options.top_k, 1));
  std::vector<Candidate> fitting;  // with their step-time lower bounds
  std::vector<Candidate> misses;  // kept only when nothing fits (bounded)
  // With the fused core, selective recompute stores and runs exactly what none
  // does (docs/executor.md: no S x S tensor to drop), so searching both would
  // list every plan twice; it is still evaluated when fixed (--recompute selective).
  const Framework& fw = request.training.framework;
  const AttentionImpl attention = fx.attention.value_or(request.framework.attention);
  std::vector<Recompute> recomputes = {Recompute::kNone, Recompute::kSelective, Recompute::kFull};
  if (attention == AttentionImpl::kFused && fw.selective == SelectiveRecompute::kScores && !fx.recompute)
    recomputes = {Recompute::kNone, Recompute::kFull};

  for (int64_t tp : Divisors(gpus)) {
   for (int64_t cp : Divisors(gpus / tp)) {
    // Search policy (SearchOptions::min_cp_rank_tokens, search.h): CP only
    // while each rank keeps enough of a sequence; --cp fixes any legal value.
    if (cp > 1 && !fx.cp && request.training.seq / cp < options.min_cp_rank_tokens) continue;
    for (int64_t pp : Divisors(gpus / tp / cp)) {
      const int dp = static_cast<int>(gpus / tp / cp / pp);
      if (!Allowed(fx.tp, int(tp)) || !Allowed(fx.cp, int(cp)) || !Allowed(fx.pp, int(pp)) ||
          !Allowed(fx.dp, dp))
        continue;
      // Check the layout-level rules once per (tp, cp, pp, dp) with a representative plan.
      Plan layout;
      layout.attention = attention;
      layout.dp = dp;
      layout.tp = static_cast<int>(tp);
      layout.cp = static_cast<int>(cp);
      layout.pp = static_cast<int>(pp);
      if (request.training.global_batch % dp != 0) {
        reject("batch=mb*ga*dp");
        continue;
      }
      const int64_t per_dp = request.training.global_batch / dp;
      layout.micro_batch = 1;
      layout.grad_accum = per_dp;
      const std::vector<SplitOption> splits = SplitOptions(request, layout.pp, fx, accounted, weights);
      if (!splits.empty()) {
        layout.first_stage_layers = splits.front().first;
        layout.last_stage_layers = splits.front().last;
        layout.account_for_embedding = splits.front().embedding;
        layout.account_for_loss = splits.front().loss;
      }
      if (const char* rule = FailedRule(request, layout, options.rules)) {
        reject(rule);
        continue;
      }
      // A framework without context parallel: every plan of this layout breaks
      // its rule, so the layout goes at once (counted once, as a layout).
      const SupportRules cp_rule = RuleBit(SupportRule::kContextParallel);
      if (layout.cp > 1 && ((fw.limits & cp_rule) || (options.runnable_only && (fw.gaps & cp_rule)))) {
        reject(SupportRuleId(SupportRule::kContextParallel));
        continue;
      }
      const std::vector<int> shards = ShardOptions(layout, fx, request.cluster.node.gpus_per_node);
      // Placements (Plan::placement): tp-pp-dp only where it places the
      // groups differently (PP > 1 and DP > 1; rule tp-pp-dp=>cp=1,ep=1 for
      // the rest) and the framework can run it, unless fixed.
      std::vector<Placement> placements;
      for (Placement pl : {Placement::kDpBeforePp, Placement::kPpBeforeDp}) {
        if (!Allowed(fx.placement, pl)) continue;
        if (pl == Placement::kPpBeforeDp && !fx.placement &&
            (pp == 1 || dp == 1 || cp > 1 || (fw.limits & RuleBit(SupportRule::kPpBeforeDp))))
          continue;
        placements.push_back(pl);
      }
      // EP candidates: the divisors of DP x CP x TP that divide the experts
      // (rule experts%ep); 1 only for a dense model (ep=>moe). With a fixed
      // expert TP, EP x ETP must divide DP x CP x TP (rule dp*cp*tp%(ep*etp)).
      std::vector<int> eps = {1};
      const int64_t etp = fx.etp.value_or(static_cast<int>(tp));
      const int64_t dense_ranks = int64_t{dp} * cp * tp;  // a stage's ranks, EP x ETP x EDP of them
      if (m.moe())
        for (int64_t e : Divisors(dense_ranks))
          if (e > 1 && m.experts % e == 0 && dense_ranks % (e * etp) == 0) eps.push_back(static_cast<int>(e));
      for (int64_t mb : Divisors(per_dp)) {
        if (!Allowed(fx.micro_batch, mb)) continue;
        for (const SplitOption& split : splits) {
          if (!Allowed(fx.vpp, split.vpp)) continue;
          Plan outer = layout;  // the dimensions fixed from here down
          outer.micro_batch = mb;
          outer.grad_accum = per_dp / mb;
          outer.vpp = split.vpp;
          outer.first_stage_layers = split.first;
          outer.last_stage_layers = split.last;
          outer.account_for_embedding = split.embedding;
          outer.account_for_loss = split.loss;
          // An interleaved split the micro-batches cannot run rejects every
          // plan below it, by the same rule: FailedRule's rules up to
          // vpp>1=>m%pp read only the dimensions fixed here.
          const char* split_rule =
              outer.vpp > 1 && (outer.pp == 1 || outer.grad_accum % outer.pp != 0)
                  ? FailedRule(request, outer, options.rules)
                  : nullptr;
          for (int zero = 0; zero <= 3; ++zero) {
           if (!Allowed(fx.zero, zero)) continue;
           for (int shard : shards) {
            // ZeRO-0 has no shard group (rule zero_shard=>zero>=1), unless fixed.
            if (zero == 0 && shard > 0 && !fx.zero_shard) continue;
            // Offload choices the ZeRO stage admits (rules offload=>zero>=1,
            // offload_params=>zero3); others are not candidates at all.
            const int offloads = zero == 0 ? 1 : zero < 3 ? 2 : 3;
            for (int off = 0; off < offloads; ++off) {
              if (!Allowed(fx.offload, Offload(off))) continue;
              for (Recompute rc : recomputes) {
                if (!Allowed(fx.recompute, rc)) continue;
                for (int sp = 0; sp <= (tp > 1 ? 1 : 0); ++sp) {
                  if (!Allowed(fx.sequence_parallel, sp == 1)) continue;
                 for (int ep : eps) {
                  if (!Allowed(fx.ep, ep)) continue;
                 for (Placement placement : placements) {
                  if (placement != Placement::kDpBeforePp && ep > 1 && !fx.placement) continue;
                  if (split_rule != nullptr) {
                    reject(split_rule);
                    continue;
                  }
                  Plan p = outer;
                  p.ep = ep;
                  p.placement = placement;
                  // The expert TP is TP unless fixed (--etp); TP's value is the default 0.
                  if (fx.etp && *fx.etp != static_cast<int>(tp)) p.etp = *fx.etp;
                  p.zero = zero;
                  p.zero_shard = shard;
                  p.offload = Offload(off);
                  p.recompute = rc;
                  p.sequence_parallel = sp == 1;
                  // Rules that depend on the inner dimensions.
                  if ((p.zero > 0 && p.grad_group() == 1 && !ZeroMeaningfulAtDp1(p)) ||
                      (p.zero_shard != 0 && HybridShardRule(p) != nullptr) || (p.ep > 1 && (p.zero == 2 || p.zero_shard > 0)) ||
                      (p.placement == Placement::kPpBeforeDp && (p.cp > 1 || p.ep > 1)) ||
                      (m.moe() && m.expert_ffn() % p.expert_tp() != 0)) {
                    reject(FailedRule(request, p, options.rules));
                    continue;
                  }
                  // What the framework cannot run is no candidate; what it
                  // does not run yet only when --runnable asks.
                  if (const char* rule = FrameworkRuleBroken(fw, RuleKind::kLimit, p)) {
                    reject(rule);
                    continue;
                  }
                  if (options.runnable_only) {
                    if (const char* rule = FrameworkRuleBroken(fw, RuleKind::kGap, p)) {
                      reject(rule);
                      continue;
                    }
                  }
                  // The exact peak of a plan that does not fit is needed
                  // only by on_candidate and while no plan fits (the misses).
                  const bool exact_peak = options.on_candidate || result.fitting == 0;
                  Candidate c{p, evaluator.EvaluateMemory(p, exact_peak)};
                  ++result.candidates;
                  if (options.on_candidate) options.on_candidate(p, c.quick.peak_bytes, c.quick.fits);
                  if (options.progress && (result.candidates & 0xFFFF) == 0) options.progress(result.candidates);
                  if (c.quick.fits) {
                    ++result.fitting;
                    c.floor = evaluator.StepFloor(p);
                    fitting.push_back(c);
                  } else if (options.keep_non_fitting && result.fitting == 0) {
                    misses.push_back(c);
                    if (misses.size() > 4 * k + 64) {
                      std::partial_sort(misses.begin(), misses.begin() + k, misses.end(), Better);
                      misses.resize(k);
                    }
                  }
                 }  // placement
                 }  // ep
                }
              }
            }
           }
          }
        }
      }
    }
   }
  }

  result.rejected_by_rule = rejected.Sorted();

  if (result.candidates == 0) {
    std::string why;
    for (auto& [rule, count] : result.rejected_by_rule)
      why += fmt::format("{}{} ({} layouts)", why.empty() ? "" : ", ", rule, count);
    // Re-run the rules on the user's fixed layout to quote the exact failure.
    Plan probe;
    probe.tp = fx.tp.value_or(1);
    probe.pp = fx.pp.value_or(1);
    probe.cp = fx.cp.value_or(1);
    probe.dp = fx.dp.value_or(std::max(1, gpus / std::max(1, probe.tp * probe.cp * probe.pp)));
    probe.zero_shard = fx.zero_shard.value_or(0);
    probe.vpp = fx.vpp.value_or(1);
    probe.ep = fx.ep.value_or(1);
    probe.etp = fx.etp.value_or(0);
    probe.first_stage_layers = fx.first_stage_layers.value_or(0);
    probe.last_stage_layers = fx.last_stage_layers.value_or(0);
    probe.account_for_embedding = fx.account_for_embedding.value_or(false);
    probe.account_for_loss = fx.account_for_loss.value_or(false);
    probe.zero = fx.zero.value_or(0);
    probe.micro_batch = fx.micro_batch.value_or(1);
    probe.grad_accum = std::max<int64_t>(1, request.training.global_batch / std::max<int64_t>(1, probe.micro_batch * probe.dp));
    probe.sequence_parallel = fx.sequence_parallel.value_or(false);
    probe.offload = fx.offload.value_or(Offload::kNone);
    probe.placement = fx.placement.value_or(Placement::kDpBeforePp);
    probe.attention = attention;
    Status detail = CheckPlan(request, probe, options.rules);
    if (detail.ok()) detail = CheckFrameworkRule(request.framework, RuleKind::kLimit, probe);
    return Status::Infeasible(fmt::format("no legal plan for {} on {} GPUs with {}; eliminated by: {}{}", m.name, gpus,
                                          fw.name, why.empty() ? "the fixed dimensions" : why,
                                          detail.ok() ? "" : "; e.g. " + detail.message()));
  }

  // Simulate in order of the lower bound and stop once the bound cannot beat
  // the K-th best simulated step: the bound never exceeds the simulated step,
  // so the top K are exact while most plans are never simulated. The bound
  // (TimeModel::StepLowerBound) is computed lazily, in order of the cheaper
  // floor below it (StepFloor): a plan is bounded only once its floor is
  // below every bound not yet simulated, so the plans are simulated in the
  // same order as with every bound computed, and a plan whose floor cannot
  // beat the K-th best is never bounded.
  // Sorted as (floor, index) pairs: the same order as sorting the candidates
  // by floor, without moving them.
  std::vector<std::pair<double, uint32_t>> by_floor(fitting.size());
  for (size_t i = 0; i < fitting.size(); ++i) by_floor[i] = {fitting[i].floor, static_cast<uint32_t>(i)};
  std::sort(by_floor.begin(), by_floor.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  auto by_bound = [](const Candidate* a, const Candidate* b) {
    return a->quick.step_s > b->quick.step_s;  // min-heap
  };
  std::vector<Candidate*> bounded;
  std::vector<Ranked> top;  // max-heap, worst first
  size_t next = 0;
  while (true) {
    const bool full = top.size() == k;
    if (next < fitting.size() &&
        (bounded.empty() || by_floor[next].first < bounded.front()->quick.step_s)) {
      Candidate& c = fitting[by_floor[next++].second];
      if (full && !(c.floor < top.front().c.quick.step_s)) {
        next = fitting.size();  // floors ascend: no plan left can beat the K-th best
        continue;
      }
      c.quick.step_s = evaluator.StepLowerBound(c.plan);  // replaced by the simulated step below
      ++result.bounded;
      bounded.push_back(&c);
      std::push_heap(bounded.begin(), bounded.end(), by_bound);
      continue;
    }
    if (bounded.empty()) break;
    std::pop_heap(bounded.begin(), bounded.end(), by_bound);
    Candidate& c = *bounded.back();
    bounded.pop_back();
    if (full && !(c.quick.step_s < top.front().c.quick.step_s)) break;
    Ranked r{c, evaluator.Time(c.plan, /*with_timeline=*/false)};
    r.c.quick.step_s = r.time->ok() ? (*r.time)->time.step_s : std::numeric_limits<double>::infinity();
    ++result.simulated;
    if (top.size() < k) {
      top.push_back(std::move(r));
      std::push_heap(top.begin(), top.end(), BetterRanked);
    } else if (Better(r.c, top.front().c)) {
      std::pop_heap(top.begin(), top.end(), BetterRanked);
      top.back() = std::move(r);
      std::push_heap(top.begin(), top.end(), BetterRanked);
    }
  }
  if (top.empty() && options.keep_non_fitting)
    for (const Candidate& c : misses) top.push_back({c, std::nullopt});
  size_t n = std::min(top.size(), k);
  std::partial_sort(top.begin(), top.begin() + n, top.end(), BetterRanked);
  for (size_t i = 0; i < n; ++i) {
    const Ranked& r = top[i];
    result.plans.push_back(options.with_timeline || !r.time ? evaluator.Evaluate(r.c.plan, options.with_timeline)
                                                             : evaluator.Evaluate(r.c.plan, *r.time));
  }

  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace p3d
