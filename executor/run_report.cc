#include "executor/run_report.h"

#include <fmt/format.h>

#include "common/units.h"
#include "models/model_json.h"

namespace p3d {

std::string FormatStep(const StepRecord& s) {
  return fmt::format("step {:5d}  loss {:.4f}  grad-norm {:.3f}  time {:.1f} ms", s.step, s.loss,
                     s.grad_norm, s.seconds * 1e3);
}

std::string FormatSummary(const TrainOptions& o, const TrainResult& r) {
  std::string out;
  out += fmt::format("device        {} ({})\n", r.device_name,
                     r.catalog_gpu.empty() ? "not in the catalog" : "catalog " + r.catalog_gpu);
  out += fmt::format(
      "model         {} ({} parameters), B={} x grad-accum {}, S={}, recompute {}, attention {}\n",
      o.model.name, r.param_count, o.plan.micro_batch, o.plan.grad_accum, o.seq,
      RecomputeName(o.plan.recompute), AttentionImplName(o.plan.attention));
  if (r.time) {
    const StepTimeStats& t = *r.time;
    out += fmt::format(
        "step time     median {:.2f} ms over {} steps after {} warm-up (min {:.2f}, max {:.2f}, "
        "p10-p90 spread {:.2f}%)\n",
        t.median_s * 1e3, t.count, o.warmup, t.min_s * 1e3, t.max_s * 1e3, t.spread() * 100);
    out += fmt::format("tokens/s      {:.0f}\n", r.tokens_per_s);
    out += fmt::format("TFLOP/s/GPU   {:.1f} (model FLOPs {:.4g} per step, models/flops.h)\n",
                       r.tflops_per_gpu, r.model_flops_per_step);
    if (r.mfu) {
      out += fmt::format("MFU           {:.1f}% of {:.0f} TFLOP/s dense bf16 ({})\n", *r.mfu * 100,
                         r.peak_flops / 1e12, r.catalog_gpu);
    } else {
      out += fmt::format("MFU           not reported: {}\n", r.mfu_note);
    }
  } else {
    out += fmt::format("step time     not reported: {} steps with {} warm-up leave none to time\n",
                       r.steps.size(), o.warmup);
  }
  const MemoryReport& m = r.memory;
  out += fmt::format(
      "memory        arena {:.2f} GiB (allocator peak) = weights {:.2f} + gradients "
      "{:.2f} + optimizer {:.2f} + activations {:.2f} + buffers {:.2f}\n",
      ToGiB(m.arena_bytes), ToGiB(m.term_bytes[0]), ToGiB(m.term_bytes[1]), ToGiB(m.term_bytes[2]),
      ToGiB(m.term_bytes[3]), ToGiB(m.term_bytes[4]));
  out += fmt::format(
      "              device used peak {:.2f} GiB of {:.2f} GiB (cudaMemGetInfo; "
      "{:.2f} GiB used before the arena)\n",
      ToGiB(m.device_used_peak_bytes), ToGiB(m.device_total_bytes),
      ToGiB(m.device_used_before_bytes));
  if (m.host_pinned_bytes > 0)
    out += fmt::format(
        "              offloaded optimizer: {:.2f} GiB pinned host memory (master, Adam m and v, "
        "gradient and bf16 staging)\n",
        ToGiB(m.host_pinned_bytes));
  if (!r.ranks.empty()) {
    const RankReport& slow = r.ranks[r.slowest_rank];
    const RankReport& peak = r.ranks[r.peak_memory_rank];
    out += fmt::format(
        "ranks         {} (DP{} TP{} PP{} ZeRO-{}): step time above is the slowest rank's per "
        "step; slowest rank {} ({:.2f} ms median); peak memory rank {} (stage {}) {:.2f} GiB\n",
        r.world, o.plan.dp, o.plan.tp, o.plan.pp, o.plan.zero, slow.rank, slow.median_step_s * 1e3,
        peak.rank, peak.pp, ToGiB(peak.device_used_peak_bytes));
    for (const RankReport& k : r.ranks)
      out += fmt::format(
          "  rank {:3d}   tp {} dp {} pp {}  median step {:.2f} ms  arena {:.2f} GiB  "
          "device peak {:.2f} GiB\n",
          k.rank, k.tp, k.dp, k.pp, k.median_step_s * 1e3, ToGiB(k.arena_bytes),
          ToGiB(k.device_used_peak_bytes));
  }
  if (r.phase_seconds) {
    const auto& p = *r.phase_seconds;
    double sum = 0;
    for (double s : p) sum += s;
    out += fmt::format("breakdown     profiled step {:.2f} ms:", r.profiled_step_seconds * 1e3);
    for (int i = 0; i < kPhases; ++i)
      out += fmt::format(" {} {:.2f} ms ({:.1f}%)", PhaseName(static_cast<Phase>(i)), p[i] * 1e3,
                         sum > 0 ? p[i] / sum * 100 : 0.0);
    out += "\n";
  }
  return out;
}

nlohmann::json TrainResultToJson(const TrainOptions& o, const TrainResult& r) {
  nlohmann::json steps = nlohmann::json::array();
  for (const StepRecord& s : r.steps)
    steps.push_back(
        {{"step", s.step}, {"loss", s.loss}, {"grad_norm", s.grad_norm}, {"seconds", s.seconds}});
  nlohmann::json j;
  j["device"] = {
      {"name", r.device_name},
      {"catalog_gpu", r.catalog_gpu.empty() ? nlohmann::json() : nlohmann::json(r.catalog_gpu)},
      {"peak_flops", r.peak_flops > 0 ? nlohmann::json(r.peak_flops) : nlohmann::json()}};
  j["run"] = {{"model", ModelToJson(o.model)},
              {"micro_batch", o.plan.micro_batch},
              {"grad_accum", o.plan.grad_accum},
              {"global_batch", o.plan.global_batch()},
              {"dp", o.plan.dp},
              {"tp", o.plan.tp},
              {"pp", o.plan.pp},
              {"vpp", o.plan.vpp},
              {"zero", o.plan.zero},
              {"bucket_bytes", o.grad_bucket_bytes},
              {"offload", OffloadName(o.plan.offload)},
              {"world", r.world},
              {"seq", o.seq},
              {"steps", o.steps},
              {"first_step", r.first_step},
              {"warmup", o.warmup},
              {"recompute", RecomputeName(o.plan.recompute)},
              {"attention", AttentionImplName(o.plan.attention)},
              {"seed", o.seed},
              {"lr", o.adam.lr},
              {"weight_decay", o.adam.weight_decay},
              {"max_grad_norm", o.max_grad_norm},
              {"data", r.data},
              {"parameters", r.param_count}};
  j["steps"] = steps;
  nlohmann::json summary = {{"model_flops_per_step", r.model_flops_per_step}};
  if (r.time) {
    const StepTimeStats& t = *r.time;
    summary["step_time_s"] = {{"median", t.median_s}, {"min", t.min_s}, {"max", t.max_s},
                              {"p10", t.p10_s},       {"p90", t.p90_s}, {"mean", t.mean_s},
                              {"count", t.count}};
    summary["tokens_per_s"] = r.tokens_per_s;
    summary["tflops_per_gpu"] = r.tflops_per_gpu;
  }
  summary["mfu"] = r.mfu ? nlohmann::json(*r.mfu) : nlohmann::json();
  if (!r.mfu && !r.mfu_note.empty()) summary["mfu_note"] = r.mfu_note;
  j["summary"] = summary;
  nlohmann::json regions = nlohmann::json::array();
  for (const ArenaRegion& reg : r.memory.regions)
    regions.push_back({{"name", reg.name},
                       {"term", RegionTermName(reg.term)},
                       {"offset", reg.offset},
                       {"bytes", reg.bytes}});
  nlohmann::json terms;
  for (int t = 0; t < kRegionTerms; ++t)
    terms[RegionTermName(static_cast<RegionTerm>(t))] = r.memory.term_bytes[t];
  j["memory"] = {{"arena_bytes", r.memory.arena_bytes},
                 {"terms_bytes", terms},
                 {"device_used_peak_bytes", r.memory.device_used_peak_bytes},
                 {"device_used_before_arena_bytes", r.memory.device_used_before_bytes},
                 {"device_total_bytes", r.memory.device_total_bytes},
                 {"host_pinned_bytes", r.memory.host_pinned_bytes},
                 {"regions", regions}};
  if (!r.ranks.empty()) {
    nlohmann::json ranks = nlohmann::json::array();
    for (const RankReport& k : r.ranks)
      ranks.push_back({{"rank", k.rank},
                       {"tp", k.tp},
                       {"dp", k.dp},
                       {"pp", k.pp},
                       {"median_step_s", k.median_step_s},
                       {"arena_bytes", k.arena_bytes},
                       {"device_used_peak_bytes", k.device_used_peak_bytes}});
    j["ranks"] = ranks;
    j["summary"]["slowest_rank"] = r.slowest_rank;
    j["summary"]["peak_memory_rank"] = r.peak_memory_rank;
    j["summary"]["peak_memory_stage"] = r.ranks[r.peak_memory_rank].pp;
  }
  if (r.phase_seconds) {
    nlohmann::json phases;
    for (int i = 0; i < kPhases; ++i)
      phases[PhaseName(static_cast<Phase>(i))] = (*r.phase_seconds)[i];
    j["profile"] = {{"step_seconds", r.profiled_step_seconds}, {"phase_seconds", phases}};
  }
  return j;
}

}  // namespace p3d
