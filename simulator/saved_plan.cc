#include "simulator/saved_plan.h"

#include <fmt/format.h>

#include <cmath>

#include "common/json_fields.h"
#include "common/units.h"
#include "models/model_json.h"

namespace p3d {

using nlohmann::json;

json ClusterSummaryToJson(const ClusterSpec& c) {
  return json{{"gpu", c.gpu.name},
              {"gpu_description", c.gpu.description},
              {"num_gpus", c.num_gpus},
              {"gpus_per_node", c.node.gpus_per_node},
              {"nodes", c.nodes()},
              {"memory_bytes_per_gpu", c.gpu.memory_bytes},
              {"peak_flops_per_gpu", c.gpu.peak_flops},
              {"hbm_bytes_per_s", c.gpu.hbm_bytes_per_s},
              // The innermost and outermost network tiers (the node's two
              // links in a two-tier network; all tiers under "hardware").
              {"intra_node_link", c.network.front().link.name},
              {"intra_node_bytes_per_s", c.network.front().link.bytes_per_s},
              {"inter_node_link", c.network.back().link.name},
              {"inter_node_bytes_per_s", c.network.back().link.bytes_per_s},
              {"source", c.source},
              {"hardware", json::parse(ClusterToJson(c))}};
}

json TrainingToJson(const TrainingSpec& t) {
  const Precision& p = t.precision;
  return json{{"global_batch", t.global_batch},
              {"seq", t.seq},
              {"dropout", t.dropout},
              {"fp8", Fp8RecipeName(t.fp8)},
              {"ep_a2a_overlap", t.ep_a2a_overlap},
              {"ep_deepep", t.ep_deepep},
              {"precision",
               {{"param_bytes", p.param_bytes},
                {"grad_bytes", p.grad_bytes},
                {"master_bytes", p.master_bytes},
                {"optimizer_bytes", p.optimizer_bytes},
                {"activation_bytes", p.activation_bytes}}}};
}

namespace {

// Byte counts are whole bytes in every document (the model computes them in
// double: 30555504639.999996 is 30555504640).
int64_t Bytes(double b) { return std::llround(b); }

}  // namespace

json MemoryToJson(const MemoryBreakdown& m) {
  return json{{"weights", Bytes(m.weights)},         {"gradients", Bytes(m.gradients)},
              {"optimizer", Bytes(m.optimizer)},     {"activations", Bytes(m.activations)},
              {"buffers", Bytes(m.buffers)},         {"runtime", Bytes(m.runtime)},
              {"total", Bytes(m.weights) + Bytes(m.gradients) + Bytes(m.optimizer) + Bytes(m.activations) +
                            Bytes(m.buffers) + Bytes(m.runtime)}};
}

json LayoutToJson(const Plan& p, const TrainingSpec& t) {
  return json{{"dp", p.dp},
              {"tp", p.tp},
              {"cp", p.cp},
              {"pp", p.pp},
              {"vpp", p.vpp},
              {"zero", p.zero},
              {"zero_shard", p.zero_shard},
              {"micro_batch", p.micro_batch},
              {"grad_accum", p.grad_accum},
              {"global_batch", p.global_batch()},
              {"seq", t.seq},
              {"recompute", RecomputeName(p.recompute)},
              {"sequence_parallel", p.sequence_parallel},
              {"offload", OffloadName(p.offload)},
              {"attention", AttentionImplName(p.attention)},
              {"first_stage_layers", p.first_stage_layers},
              {"last_stage_layers", p.last_stage_layers},
              {"account_for_embedding", p.account_for_embedding},
              {"account_for_loss", p.account_for_loss},
              {"ep", p.ep},
              {"etp", p.expert_tp()},
              {"placement", PlacementName(p.placement)}};
}

json PredictionToJson(const EvaluatedPlan& e) {
  json stages = json::array();
  for (const StageMemory& s : e.memory.stages)
    stages.push_back(json{{"stage", s.stage},
                          {"layers", s.layers},
                          {"memory", MemoryToJson(s.memory)},
                          {"host_bytes", Bytes(s.host_bytes)}});
  const TimeBreakdown& t = e.time;
  return json{{"fits", e.fits},
              {"runs", e.runs_rule == nullptr},
              {"runs_rule", e.runs_rule ? json(e.runs_rule) : json()},
              {"memory", MemoryToJson(e.memory.peak())},
              {"peak_stage", e.memory.peak_stage},
              {"host_bytes_per_node", Bytes(e.memory.host_bytes_per_node)},
              {"stages", stages},
              {"time",
               {{"step_s", t.step_s},
                {"compute_s", t.compute_s},
                {"tp_comm_s", t.tp_comm_s},
                 {"cp_comm_s", t.cp_comm_s},
                 {"ep_comm_s", t.ep_comm_s},
                {"pp_comm_s", t.pp_comm_s},
                {"dp_comm_s", t.dp_comm_s},
                {"bubble_s", t.bubble_s},
                {"optimizer_s", t.optimizer_s},
                {"offload_s", t.offload_s},
                {"other_s", t.other_s}}},
              {"tokens_per_s", e.tokens_per_s},
              {"samples_per_s", e.samples_per_s},
              {"tflops_per_gpu", e.tflops_per_gpu},
              {"mfu", e.mfu},
              {"hfu", e.hfu}};
}

namespace {

// A sub-object of `obj` (an error names the field when missing or not an object).
StatusOr<const json*> Object(const JsonFields& f, const json& obj, const char* key) {
  if (!f.Has(key)) return f.Error(key, "is missing (required)");
  if (!obj.at(key).is_object()) return f.Error(key, "must be an object");
  return &obj.at(key);
}

StatusOr<int> Int(const JsonFields& f, const char* key, int64_t min, int64_t max) {
  P3D_ASSIGN_OR_RETURN(int64_t v, f.IntInRange(key, min, max));
  return static_cast<int>(v);
}

}  // namespace

json SavedPlanToJson(const PlanRequest& r, const EvaluatedPlan& e) {
  return json{{"schema", "p3d-saved-plan/1"},
              {"model", ModelToJson(r.model)},
              {"cluster", ClusterSummaryToJson(r.cluster)},
              {"framework", FrameworkProfileToJson(r.framework)},
              {"training", TrainingToJson(r.training)},
              {"plan", LayoutToJson(e.plan, r.training)},
              {"prediction", PredictionToJson(e)}};
}

StatusOr<SavedPlan> ParseSavedPlan(const json& doc, const std::string& origin) {
  if (!doc.is_object()) return Status::InvalidArgument(fmt::format("{}: not a JSON object", origin));
  JsonFields top(doc, origin);
  P3D_RETURN_IF_ERROR(top.OnlyKeys({"schema", "model", "cluster", "framework", "training", "plan", "prediction"}));
  P3D_ASSIGN_OR_RETURN(std::string schema, top.String("schema"));
  if (schema != "p3d-saved-plan/1")
    return Status::InvalidArgument(fmt::format("{}: field 'schema' is '{}', expected 'p3d-saved-plan/1'", origin, schema));
  SavedPlan s;
  if (!top.Has("model")) return top.Error("model", "is missing (required)");
  P3D_ASSIGN_OR_RETURN(s.request.model, ModelFromJson(doc.at("model"), origin + ": model", "saved-model"));

  P3D_ASSIGN_OR_RETURN(const json* cluster, Object(top, doc, "cluster"));
  P3D_ASSIGN_OR_RETURN(const json* training, Object(top, doc, "training"));
  P3D_ASSIGN_OR_RETURN(const json* plan, Object(top, doc, "plan"));
  JsonFields c(*cluster, origin + ": cluster");
  P3D_ASSIGN_OR_RETURN(int num_gpus, Int(c, "num_gpus", 1, kMaxGpus));
  P3D_ASSIGN_OR_RETURN(const json* hardware, Object(c, *cluster, "hardware"));
  P3D_ASSIGN_OR_RETURN(s.request.cluster, ParseClusterJson(hardware->dump(), origin + ": cluster.hardware"));
  s.request.cluster.num_gpus = num_gpus;

  // "framework" is absent from plans saved before profiles existed: p3d's
  // executor. Its recipe defaults come first; "training" records what ran.
  if (top.Has("framework")) {
    P3D_ASSIGN_OR_RETURN(const json* framework, Object(top, doc, "framework"));
    P3D_ASSIGN_OR_RETURN(FrameworkProfile profile, ParseFrameworkProfile(*framework, origin + ": framework"));
    SetFramework(profile, &s.request);
  }
  JsonFields t(*training, origin + ": training");
  TrainingSpec& tr = s.request.training;
  P3D_ASSIGN_OR_RETURN(tr.global_batch, t.IntInRange("global_batch", 1, kMaxGlobalBatch));
  P3D_ASSIGN_OR_RETURN(tr.seq, t.IntInRange("seq", 1, kMaxSeq));
  P3D_ASSIGN_OR_RETURN(tr.dropout, t.BoolOr("dropout", false));
  // Absent in plans saved before the EP all-to-all overlap: off.
  P3D_ASSIGN_OR_RETURN(tr.ep_a2a_overlap, t.BoolOr("ep_a2a_overlap", false));
  // Absent in plans saved before the DeepEP dispatcher: the all-to-all one.
  P3D_ASSIGN_OR_RETURN(tr.ep_deepep, t.BoolOr("ep_deepep", false));
  if (t.Has("fp8")) {  // absent in plans saved before FP8: off
    P3D_ASSIGN_OR_RETURN(std::string fp8, t.String("fp8"));
    if (!ParseFp8Recipe(fp8, &tr.fp8))
      return t.Error("fp8", fmt::format("must be one of {}, got '{}'", Fp8RecipeNames(), fp8));
  }
  P3D_ASSIGN_OR_RETURN(const json* precision, Object(t, *training, "precision"));
  JsonFields pf(*precision, origin + ": training.precision");
  Precision& p = tr.precision;
  P3D_ASSIGN_OR_RETURN(p.param_bytes, Int(pf, "param_bytes", 1, 8));
  P3D_ASSIGN_OR_RETURN(p.grad_bytes, Int(pf, "grad_bytes", 1, 8));
  P3D_ASSIGN_OR_RETURN(p.master_bytes, Int(pf, "master_bytes", 0, 8));
  P3D_ASSIGN_OR_RETURN(p.optimizer_bytes, Int(pf, "optimizer_bytes", 0, 16));
  P3D_ASSIGN_OR_RETURN(p.activation_bytes, Int(pf, "activation_bytes", 1, 8));

  JsonFields l(*plan, origin + ": plan");
  P3D_RETURN_IF_ERROR(l.OnlyKeys({"dp", "tp", "cp", "pp", "vpp", "zero", "zero_shard", "micro_batch", "grad_accum", "global_batch", "seq",
                                  "recompute", "sequence_parallel", "offload", "attention", "first_stage_layers",
                                  "last_stage_layers", "account_for_embedding", "account_for_loss", "ep",
                                  "etp", "placement"}));
  P3D_ASSIGN_OR_RETURN(s.plan.dp, Int(l, "dp", 1, kMaxGpus));
  P3D_ASSIGN_OR_RETURN(s.plan.tp, Int(l, "tp", 1, kMaxGpus));
  P3D_ASSIGN_OR_RETURN(s.plan.pp, Int(l, "pp", 1, kMaxGpus));
  P3D_ASSIGN_OR_RETURN(s.plan.vpp, Int(l, "vpp", 1, kMaxGpus));
  // "ep" is absent from plans saved before expert parallelism existed: 1.
  if (l.Has("ep")) {
    P3D_ASSIGN_OR_RETURN(s.plan.ep, Int(l, "ep", 1, kMaxGpus));
  }
  if (l.Has("etp")) {
    P3D_ASSIGN_OR_RETURN(s.plan.etp, Int(l, "etp", 1, kMaxGpus));
    if (s.plan.etp == s.plan.tp) s.plan.etp = 0;  // the default: expert TP = TP
  }
  P3D_ASSIGN_OR_RETURN(s.plan.zero, Int(l, "zero", 0, 3));
  // "cp" and "zero_shard" are absent from plans saved before context parallel
  // and hybrid sharding existed: CP 1, one shard group.
  if (l.Has("cp")) {
    P3D_ASSIGN_OR_RETURN(s.plan.cp, Int(l, "cp", 1, kMaxGpus));
  }
  if (l.Has("zero_shard")) {
    P3D_ASSIGN_OR_RETURN(s.plan.zero_shard, Int(l, "zero_shard", 0, kMaxGpus));
  }
  P3D_ASSIGN_OR_RETURN(s.plan.micro_batch, l.IntInRange("micro_batch", 1, kMaxGlobalBatch));
  P3D_ASSIGN_OR_RETURN(s.plan.grad_accum, l.IntInRange("grad_accum", 1, kMaxGlobalBatch));
  P3D_ASSIGN_OR_RETURN(s.plan.sequence_parallel, l.BoolOr("sequence_parallel", false));
  P3D_ASSIGN_OR_RETURN(std::string recompute, l.String("recompute"));
  if (!ParseRecompute(recompute, &s.plan.recompute))
    return l.Error("recompute", fmt::format("must be none|selective|full, got '{}'", recompute));
  // "placement" is absent from plans saved before placements existed: the default.
  if (l.Has("placement")) {
    P3D_ASSIGN_OR_RETURN(std::string placement, l.String("placement"));
    if (!ParsePlacement(placement, &s.plan.placement))
      return l.Error("placement", fmt::format("must be tp-cp-ep-dp-pp|tp-pp-dp, got '{}'", placement));
  }
  // "offload" is absent from plans saved before offload existed: none.
  if (l.Has("offload")) {
    P3D_ASSIGN_OR_RETURN(std::string offload, l.String("offload"));
    if (!ParseOffload(offload, &s.plan.offload))
      return l.Error("offload", fmt::format("must be none|optimizer|params, got '{}'", offload));
  }
  // "attention" is absent from plans saved before the fused core existed:
  // their predictions describe the unfused core.
  s.plan.attention = AttentionImpl::kUnfused;
  if (l.Has("attention")) {
    P3D_ASSIGN_OR_RETURN(std::string attention, l.String("attention"));
    if (!ParseAttentionImpl(attention, &s.plan.attention))
      return l.Error("attention", fmt::format("must be fused|unfused, got '{}'", attention));
  }
  // Uneven stages are absent from plans saved before they existed: the even split.
  const int64_t layers = s.request.model.layers;
  if (l.Has("first_stage_layers")) {
    P3D_ASSIGN_OR_RETURN(s.plan.first_stage_layers, Int(l, "first_stage_layers", 0, layers));
  }
  if (l.Has("last_stage_layers")) {
    P3D_ASSIGN_OR_RETURN(s.plan.last_stage_layers, Int(l, "last_stage_layers", 0, layers));
  }
  // The embedding/loss split accounting: absent from plans saved before it existed (off).
  P3D_ASSIGN_OR_RETURN(s.plan.account_for_embedding, l.BoolOr("account_for_embedding", false));
  P3D_ASSIGN_OR_RETURN(s.plan.account_for_loss, l.BoolOr("account_for_loss", false));
  std::string split;
  if (const char* rule = PipelineSplitRule(s.plan, layers, &split))
    return Status::InvalidArgument(fmt::format("{}: plan: rule {}: {}", origin, rule, split));
  if (top.Has("prediction")) s.prediction = doc.at("prediction");
  return s;
}

StatusOr<SavedPlan> LoadSavedPlan(const std::string& path) {
  P3D_ASSIGN_OR_RETURN(json doc, ReadJsonFile(path, "plan file"));
  return ParseSavedPlan(doc, path);
}

Status CheckPredictedFit(const SavedPlan& plan, bool force, const std::string& plan_file) {
  const json& pred = plan.prediction;
  auto fits = pred.find("fits");
  if (fits == pred.end() || !fits->is_boolean())
    return Status::InvalidArgument(fmt::format("{}: field 'prediction.fits' is missing or not true/false", plan_file));
  if (fits->get<bool>() || force) return Status::Ok();
  const json* total = pred.contains("memory") && pred["memory"].is_object() && pred["memory"].contains("total")
                          ? &pred["memory"]["total"]
                          : nullptr;
  if (!total || !total->is_number())
    return Status::InvalidArgument(fmt::format("{}: field 'prediction.memory.total' is missing", plan_file));
  auto stage = pred.find("peak_stage");
  return Status::Infeasible(fmt::format(
      "{}: the simulator predicts {:.2f} GiB per GPU (pipeline stage {}), above the {:.2f} GiB of "
      "'{}'; not running it. Pass --force to run it anyway: p3d-compare then tells whether the "
      "boundary was right",
      plan_file, ToGiB(total->get<double>()), stage != pred.end() ? stage->dump() : "?",
      ToGiB(plan.request.cluster.gpu.memory_bytes), plan.request.cluster.gpu.name));
}

}  // namespace p3d
