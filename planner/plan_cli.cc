#include "planner/plan_cli.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cmath>

#include "common/input_file.h"
#include "common/units.h"
#include "models/zoo.h"
#include "planner/explain.h"
#include "planner/export.h"
#include "planner/format_table.h"
#include "planner/plan_json.h"
#include "planner/report.h"
#include "planner/search.h"
#include "simulator/framework_profile.h"
#include "simulator/hardware.h"
#include "simulator/memory_model.h"
#include "simulator/profile.h"

namespace p3d {
namespace {

StatusOr<ClusterSpec> ResolveCluster(const PlanCliOptions& o, std::ostream& err) {
  if (o.gpus < 1 || o.gpus > kMaxGpus)
    return Status::InvalidArgument(fmt::format("--gpus must be in 1..{}, got {}", kMaxGpus, o.gpus));
  if (o.claim_step_s && (!std::isfinite(*o.claim_step_s) || *o.claim_step_s <= 0))
    return Status::InvalidArgument(fmt::format("--claim-step must be a positive number of seconds, got {}", *o.claim_step_s));
  if (o.mem_gb && (!std::isfinite(*o.mem_gb) || *o.mem_gb <= 0 || *o.mem_gb > 100000))
    return Status::InvalidArgument(fmt::format("--mem must be a positive size in GB, got {}", *o.mem_gb));
  ClusterSpec cluster;
  if (!o.gpu.empty()) {
    bool is_file = o.gpu.find(".json") != std::string::npos || o.gpu.find('/') != std::string::npos;
    if (is_file) {
      P3D_ASSIGN_OR_RETURN(cluster, LoadClusterJson(o.gpu));
    } else {
      P3D_ASSIGN_OR_RETURN(cluster, CatalogCluster(o.gpu));
    }
    if (o.mem_gb) {
      double have = ToGiB(cluster.gpu.memory_bytes);
      if (std::fabs(have - *o.mem_gb) > 0.1 * *o.mem_gb)
        return Status::InvalidArgument(fmt::format("--mem {} contradicts --gpu {} ({:.1f} GiB)", *o.mem_gb, o.gpu, have));
    }
  } else if (o.mem_gb) {
    P3D_ASSIGN_OR_RETURN(std::string name, DefaultGpuForMemory(*o.mem_gb));
    P3D_ASSIGN_OR_RETURN(cluster, CatalogCluster(name));
    err << fmt::format("note: --mem {} picked GPU '{}' ({}); pass --gpu NAME to choose another "
                       "(--list-gpus)\n", *o.mem_gb, name, cluster.gpu.description);
  } else if (!o.profile.empty()) {
    P3D_ASSIGN_OR_RETURN(cluster, LoadClusterJson(o.profile));  // the profile's own hardware part
  } else {
    return Status::InvalidArgument("give --mem GB or --gpu NAME (see --list-gpus)");
  }
  if (!o.profile.empty()) {
    P3D_ASSIGN_OR_RETURN(cluster, ApplyProfile(cluster, o.profile));
  }
  if (o.gpus_per_node) {
    if (*o.gpus_per_node < 1 || *o.gpus_per_node > 4096)
      return Status::InvalidArgument(fmt::format("--gpus-per-node must be in 1..4096, got {}", *o.gpus_per_node));
    P3D_RETURN_IF_ERROR(SetGpusPerNode(&cluster, *o.gpus_per_node));
  }
  const int per_node = cluster.node.gpus_per_node;
  if (o.gpus > per_node && o.gpus % per_node != 0)
    return Status::InvalidArgument(fmt::format(
        "rule whole-nodes: {} GPUs do not fill whole nodes of {} GPUs (--gpus-per-node); give a multiple of {}, "
        "or fewer GPUs than one node", o.gpus, per_node, per_node));
  cluster.num_gpus = static_cast<int>(o.gpus);
  return cluster;
}

// The framework profile: --framework, else the one the export format writes
// (--export megatron predicts what Megatron-LM will run), else p3d's executor.
StatusOr<FrameworkProfile> ResolveFramework(const PlanCliOptions& o) {
  if (!o.framework.empty()) return LoadFrameworkProfile(o.framework);
  const std::vector<std::string_view> writes = ExportFrameworks(o.export_format);
  return LoadFrameworkProfile(writes.empty() ? P3dFrameworkProfile().framework.name : std::string(writes.front()));
}

// The training recipe: the framework's defaults (already in *t), then the flags.
Status ResolveTraining(const PlanCliOptions& o, TrainingSpec* out) {
  TrainingSpec& t = *out;
  if (o.global_batch) t.global_batch = *o.global_batch;
  if (o.seq) t.seq = *o.seq;
  if (t.global_batch < 1 || t.global_batch > kMaxGlobalBatch)
    return Status::InvalidArgument(
        fmt::format("--global-batch must be in 1..{} sequences, got {}", kMaxGlobalBatch, t.global_batch));
  if (t.seq < 1 || t.seq > kMaxSeq)
    return Status::InvalidArgument(fmt::format("--seq must be in 1..{} tokens, got {}", kMaxSeq, t.seq));
  if (o.grad_dtype == "bf16") t.precision.grad_bytes = 2;
  else if (o.grad_dtype == "fp32") t.precision.grad_bytes = 4;
  else if (!o.grad_dtype.empty())
    return Status::InvalidArgument(fmt::format("--grad-dtype must be fp32 or bf16, got '{}'", o.grad_dtype));
  if (o.master_bytes) {
    if (*o.master_bytes < 0 || *o.master_bytes > 8)
      return Status::InvalidArgument(fmt::format("--master-bytes must be in 0..8, got {}", *o.master_bytes));
    t.precision.master_bytes = *o.master_bytes;
  }
  if (o.adam_bytes) {
    if (*o.adam_bytes < 0 || *o.adam_bytes > 16)
      return Status::InvalidArgument(fmt::format("--adam-bytes must be in 0..16, got {}", *o.adam_bytes));
    t.precision.optimizer_bytes = *o.adam_bytes;
  }
  if (o.dropout) t.dropout = *o.dropout;
  t.ep_a2a_overlap = o.ep_a2a_overlap;
  t.ep_deepep = o.ep_deepep;
  if (!o.fp8.empty() && !ParseFp8Recipe(o.fp8, &t.fp8))
    return Status::InvalidArgument(fmt::format("--fp8 must be one of {}, got '{}'", Fp8RecipeNames(), o.fp8));
  // A recipe the framework cannot run at all (rule fp8-recipe, kind limit).
  std::string detail;
  if (Fp8RuleBroken(t.framework, RuleKind::kLimit, t.fp8, &detail))
    return Status::Infeasible(detail);
  return Status::Ok();
}

StatusOr<SearchOptions> ResolveSearch(const PlanCliOptions& o) {
  SearchOptions s;
  auto positive = [](const char* flag, const std::optional<int64_t>& v) -> Status {
    if (v && (*v < 1 || *v > (int64_t{1} << 24)))
      return Status::InvalidArgument(fmt::format("{} must be in 1..2^24, got {}", flag, *v));
    return Status::Ok();
  };
  auto as64 = [](const std::optional<int>& v) { return v ? std::optional<int64_t>(*v) : std::nullopt; };
  P3D_RETURN_IF_ERROR(positive("--dp", as64(o.dp)));
  P3D_RETURN_IF_ERROR(positive("--tp", as64(o.tp)));
  P3D_RETURN_IF_ERROR(positive("--pp", as64(o.pp)));
  P3D_RETURN_IF_ERROR(positive("--cp", as64(o.cp)));
  if (o.zero_shard && (*o.zero_shard < 0 || *o.zero_shard > (1 << 24)))
    return Status::InvalidArgument(
        fmt::format("--zero-shard must be 0 (the whole DP x CP group) or a group size in 2..2^24, got {}",
                    *o.zero_shard));
  P3D_RETURN_IF_ERROR(positive("--vpp", as64(o.vpp)));
  P3D_RETURN_IF_ERROR(positive("--ep", as64(o.ep)));
  P3D_RETURN_IF_ERROR(positive("--etp", as64(o.etp)));
  P3D_RETURN_IF_ERROR(positive("--first-stage-layers", as64(o.first_stage_layers)));
  P3D_RETURN_IF_ERROR(positive("--last-stage-layers", as64(o.last_stage_layers)));
  P3D_RETURN_IF_ERROR(positive("--micro-batch", o.micro_batch));
  if (o.zero && (*o.zero < 0 || *o.zero > 3))
    return Status::InvalidArgument(fmt::format("--zero must be 0, 1, 2 or 3, got {}", *o.zero));
  if (o.top < 1 || o.top > 100000) return Status::InvalidArgument(fmt::format("--top must be in 1..100000, got {}", o.top));
  if (o.pick < 1 || o.pick > o.top)
    return Status::InvalidArgument(fmt::format("--pick must be in 1..--top ({}), got {}", o.top, o.pick));
  s.fixed.dp = o.dp;
  s.fixed.tp = o.tp;
  s.fixed.pp = o.pp;
  s.fixed.cp = o.cp;
  s.fixed.zero_shard = o.zero_shard;
  s.fixed.vpp = o.vpp;
  // Megatron-Core refuses the EP all-to-all overlap with PP > 1 without
  // interleaving (EpOverlapRuns), as with full recompute below.
  if (o.ep_a2a_overlap && o.pp && *o.pp > 1 && o.vpp && *o.vpp == 1)
    return Status::InvalidArgument(
        "--ep-a2a-overlap with --pp > 1 and --vpp 1: Megatron-Core runs --overlap-moe-expert-parallel-comm "
        "only with interleaved pipeline stages when PP > 1");
  // DeepEP dispatches over the expert-parallel group; a fixed EP 1 has none
  // (Megatron-Core's flex dispatcher asserts TP x EP > 1).
  if (o.ep_deepep && o.ep && *o.ep == 1)
    return Status::InvalidArgument("--ep-deepep with --ep 1: DeepEP dispatches tokens over an expert-parallel group");
  s.fixed.ep = o.ep;
  s.fixed.etp = o.etp;
  s.fixed.first_stage_layers = o.first_stage_layers;
  s.fixed.last_stage_layers = o.last_stage_layers;
  s.fixed.account_for_embedding = o.account_for_embedding;
  s.fixed.account_for_loss = o.account_for_loss;
  s.fixed.zero = o.zero;
  s.fixed.micro_batch = o.micro_batch;
  s.fixed.sequence_parallel = o.sequence_parallel;
  if (!o.recompute.empty()) {
    Recompute recompute;
    if (!ParseRecompute(o.recompute, &recompute))
      return Status::InvalidArgument(fmt::format("--recompute must be none, selective or full, got '{}'", o.recompute));
    s.fixed.recompute = recompute;
    // Megatron-Core refuses the EP all-to-all overlap with full recompute
    // (EpOverlapRuns).
    if (o.ep_a2a_overlap && recompute == Recompute::kFull)
      return Status::InvalidArgument(
          "--ep-a2a-overlap with --recompute full: Megatron-Core refuses --overlap-moe-expert-parallel-comm "
          "with full recomputation");
  }
  if (!o.attention.empty()) {
    AttentionImpl attention;
    if (!ParseAttentionImpl(o.attention, &attention))
      return Status::InvalidArgument(fmt::format("--attention must be fused or unfused, got '{}'", o.attention));
    s.fixed.attention = attention;
  }
  if (!o.offload.empty()) {
    Offload offload;
    if (!ParseOffload(o.offload, &offload))
      return Status::InvalidArgument(fmt::format("--offload must be none, optimizer or params, got '{}'", o.offload));
    s.fixed.offload = offload;
  }
  if (!o.placement.empty()) {
    Placement placement;
    if (!ParsePlacement(o.placement, &placement))
      return Status::InvalidArgument(
          fmt::format("--placement must be tp-cp-ep-dp-pp or tp-pp-dp, got '{}'", o.placement));
    s.fixed.placement = placement;
  }
  s.rules.allow_tp_across_nodes = o.allow_tp_across_nodes;
  s.runnable_only = o.runnable;
  s.top_k = o.top;
  return s;
}

// Plans above this fraction of GPU memory get a note: allocator fragmentation
// and framework overheads p3d does not model can push them out (docs/metrics.md).
constexpr double kHeadroomNoteFraction = 0.95;

// Notes for listed fitting plans with little memory headroom.
std::string HeadroomNotes(const PlanRequest& request, const std::vector<EvaluatedPlan>& plans) {
  std::string notes;
  for (size_t i = 0; i < plans.size(); ++i) {
    double used = plans[i].memory.peak().total() / request.cluster.gpu.memory_bytes;
    if (plans[i].fits && used > kHeadroomNoteFraction)
      notes += fmt::format("note: plan #{} uses {:.1f}% of GPU memory (over {:.0f}%): little headroom for "
                           "fragmentation or overheads p3d does not model\n",
                           i + 1, 100 * used, 100 * kHeadroomNoteFraction);
  }
  return notes;
}

// Why the best plan does not fit: GPU memory, or (with offload) the node's host memory.
Status NoFitStatus(const PlanRequest& request, const EvaluatedPlan* best) {
  const double gpu = request.cluster.gpu.memory_bytes;
  if (best && FitsInMemory(best->memory.peak(), request.cluster.gpu))
    return Status::Infeasible(fmt::format(
        "no plan fits in the host memory of a node ({:.1f} GiB, the offloaded state of {} GPUs); the closest plan "
        "needs {:.1f} GiB per node; the closest misses are listed above",
        ToGiB(request.cluster.node.host_memory_bytes), GpusOnNode(request.cluster),
        ToGiB(best->memory.host_bytes_per_node)));
  return Status::Infeasible(
      fmt::format("no plan fits in {:.1f} GiB of GPU memory per GPU; the closest misses are listed above", ToGiB(gpu)));
}

// A refused export names the framework's limit; point to the best-ranked plan
// the framework does accept, so the user need not search by hand.
Status WithExportableHint(const Status& refusal, const std::string& format, const PlanRequest& request,
                          const std::vector<EvaluatedPlan>& plans) {
  if (refusal.code() != Status::Code::kInfeasible) return refusal;
  for (size_t i = 0; i < plans.size(); ++i) {
    if (!plans[i].fits || !ExportPlan(format, request, plans[i]).ok()) continue;
    return Status::Infeasible(fmt::format("{}\nplan #{} ({}) is the best-ranked plan {} accepts: rerun with --pick {}",
                                          refusal.message(), i + 1, PlanSummary(plans[i].plan), format, i + 1));
  }
  return Status::Infeasible(fmt::format("{}\nnone of the {} listed plans can be exported to {}; raise --top or fix "
                                        "dimensions (e.g. --zero 1 --vpp 1)", refusal.message(), plans.size(), format));
}

void ListGpus(std::ostream& out) {
  out << fmt::format("{:<12} {:>9} {:>10} {:>11} {:>10} {:>6}  {}\n", "name", "mem GiB", "TFLOP/s", "FP8 TFLOP/s",
                     "HBM GB/s", "/node", "description");
  for (const std::string& name : CatalogGpuNames()) {
    StatusOr<ClusterSpec> c = CatalogCluster(name);
    if (!c.ok()) continue;
    const GpuSpec& g = c->gpu;
    const std::string fp8 = g.fp8_peak_flops <= 0 ? "-" : fmt::format("{:.0f}{}", g.fp8_peak_flops / 1e12, g.mxfp8 ? " mx" : "");
    out << fmt::format("{:<12} {:>9.1f} {:>10.0f} {:>11} {:>10.0f} {:>6}  {}\n", name, ToGiB(g.memory_bytes),
                       g.peak_flops / 1e12, fp8, g.hbm_bytes_per_s / 1e9, c->node.gpus_per_node, g.description);
  }
}

void ListFrameworks(std::ostream& out) {
  for (const std::string& name : BuiltinFrameworkNames()) {
    StatusOr<FrameworkProfile> p = LoadFrameworkProfile(name);
    if (p.ok()) out << fmt::format("{:<20} {} [{}]\n", name, p->description, p->version);
  }
}

void ListModels(std::ostream& out) {
  out << fmt::format("{:<20} {:>6} {:>5} {:>6} {:>6} {:>4} {:>4} {:>7} {:>10}\n", "name", "arch", "L", "H", "F", "NH",
                     "KV", "V", "params");
  for (const std::string& name : ZooNames()) {
    StatusOr<ModelSpec> m = ZooModel(name);
    if (!m.ok()) continue;
    out << fmt::format("{:<20} {:>6} {:>5} {:>6} {:>6} {:>4} {:>4} {:>7} {:>9.2f}B\n", name, ArchName(m->arch),
                       m->layers, m->hidden, m->ffn, m->heads, m->kv_heads, m->vocab, m->TotalParams() / 1e9);
  }
}

}  // namespace

Status RunPlanCli(const PlanCliOptions& o, std::ostream& out, std::ostream& err) {
  if (o.list_gpus) { ListGpus(out); return Status::Ok(); }
  if (o.list_models) { ListModels(out); return Status::Ok(); }
  if (o.list_frameworks) { ListFrameworks(out); return Status::Ok(); }
  if (o.model.empty()) return Status::InvalidArgument("--model is required (zoo name, size like 70B, or config.json)");

  PlanRequest request;
  P3D_ASSIGN_OR_RETURN(request.model, ResolveModel(o.model));
  P3D_ASSIGN_OR_RETURN(request.cluster, ResolveCluster(o, err));
  P3D_ASSIGN_OR_RETURN(FrameworkProfile framework, ResolveFramework(o));
  if (!o.export_format.empty()) P3D_RETURN_IF_ERROR(CheckExportFramework(o.export_format, framework.framework.name));
  SetFramework(framework, &request);
  P3D_RETURN_IF_ERROR(ResolveTraining(o, &request.training));
  P3D_ASSIGN_OR_RETURN(SearchOptions search, ResolveSearch(o));
  search.with_timeline = !o.report.empty();
  bool tty = isatty(fileno(stderr));
  if (tty) search.progress = [&err](int64_t n) { err << fmt::format("\rsearching... {} plans", n) << std::flush; };

  P3D_ASSIGN_OR_RETURN(SearchResult result, SearchPlans(request, search));
  if (tty && result.candidates >= 0x10000) err << "\r" << std::string(40, ' ') << "\r";

  const EvaluatedPlan* picked =
      o.pick <= static_cast<int>(result.plans.size()) ? &result.plans[o.pick - 1] : nullptr;
  if (o.json && !o.export_format.empty())
    return Status::InvalidArgument("--json and --export both write a document to stdout; give one of them");
  if (o.json) {
    out << SearchToJson(request, result).dump(2) << "\n";
    err << HeadroomNotes(request, result.plans);
  } else {
    // With --export, stdout carries only the exported file: the table goes to stderr.
    std::ostream& table = o.export_format.empty() ? out : err;
    table << FormatRequest(request) << FormatPlanTable(request, result) << HeadroomNotes(request, result.plans);
    if (o.explain && picked) {
      table << "\n" << ExplainPlan(request, *picked, o.pick);
      if (picked->fits) table << "\n" << CompareWithRuleOfThumb(request, *picked);
    }
    if (o.claim_step_s && picked) table << "\n" << ExplainStepClaim(request, *picked, *o.claim_step_s);
  }
  if (!o.save_plan.empty()) {
    if (!picked) return Status::Infeasible("no plan to save");
    P3D_RETURN_IF_ERROR(WriteFileAtomic(o.save_plan, SavedPlanToJson(request, *picked).dump(2) + "\n", "--save-plan"));
    err << fmt::format("wrote plan #{} to {}\n", o.pick, o.save_plan);
  }
  if (!o.export_format.empty()) {
    if (!picked) return Status::Infeasible("no plan to export");
    StatusOr<ExportedFile> exported = ExportPlan(o.export_format, request, *picked);
    if (!exported.ok()) return WithExportableHint(exported.status(), o.export_format, request, result.plans);
    const ExportedFile& file = *exported;
    out << file.text;
    for (const std::string& note : file.notes) err << "note: " << note << "\n";
  }
  if (!o.report.empty()) {
    P3D_ASSIGN_OR_RETURN(std::string html, RenderReportHtml(request, result.plans, o.pick - 1));
    P3D_RETURN_IF_ERROR(WriteFileAtomic(o.report, html, "--report"));
    err << fmt::format("wrote report to {}\n", o.report);
  }
  if (!picked || !picked->fits) return NoFitStatus(request, result.plans.empty() ? nullptr : &result.plans[0]);
  return Status::Ok();
}

}  // namespace p3d
