#include "planner/plan_json.h"

#include <fmt/format.h>

#include <fstream>

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
              {"intra_node_link", c.node.intra.name},
              {"intra_node_bytes_per_s", c.node.intra.bytes_per_s},
              {"inter_node_link", c.node.inter.name},
              {"inter_node_bytes_per_s", c.node.inter.bytes_per_s},
              {"source", c.source},
              {"hardware", json::parse(ClusterToJson(c))}};
}

json TrainingToJson(const TrainingSpec& t) {
  const Precision& p = t.precision;
  return json{{"global_batch", t.global_batch},
              {"seq", t.seq},
              {"dropout", t.dropout},
              {"precision",
               {{"param_bytes", p.param_bytes},
                {"grad_bytes", p.grad_bytes},
                {"master_bytes", p.master_bytes},
                {"optimizer_bytes", p.optimizer_bytes},
                {"activation_bytes", p.activation_bytes}}}};
}

json MemoryToJson(const MemoryBreakdown& m) {
  return json{{"weights", m.weights},         {"gradients", m.gradients}, {"optimizer", m.optimizer},
              {"activations", m.activations}, {"buffers", m.buffers},     {"runtime", m.runtime},
              {"total", m.total()}};
}

namespace {

json LayoutToJson(const Plan& p, const TrainingSpec& t) {
  return json{{"dp", p.dp},
              {"tp", p.tp},
              {"pp", p.pp},
              {"vpp", p.vpp},
              {"zero", p.zero},
              {"micro_batch", p.micro_batch},
              {"grad_accum", p.grad_accum},
              {"global_batch", p.global_batch()},
              {"seq", t.seq},
              {"recompute", RecomputeName(p.recompute)},
              {"sequence_parallel", p.sequence_parallel},
              {"offload", OffloadName(p.offload)},
              {"attention", AttentionImplName(p.attention)}};
}

json PredictionToJson(const EvaluatedPlan& e) {
  json stages = json::array();
  for (const StageMemory& s : e.memory.stages)
    stages.push_back(json{{"stage", s.stage},
                          {"layers", s.layers},
                          {"memory", MemoryToJson(s.memory)},
                          {"host_bytes", s.host_bytes}});
  const TimeBreakdown& t = e.time;
  return json{{"fits", e.fits},
              {"memory", MemoryToJson(e.memory.peak())},
              {"peak_stage", e.memory.peak_stage},
              {"host_bytes_per_node", e.memory.host_bytes_per_node},
              {"stages", stages},
              {"time",
               {{"step_s", t.step_s},
                {"compute_s", t.compute_s},
                {"tp_comm_s", t.tp_comm_s},
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

// Typed field access with errors that name the field and the document.
template <typename T>
Status Get(const json& obj, const char* key, const std::string& where, T* out) {
  if (!obj.is_object() || !obj.contains(key))
    return Status::InvalidArgument(fmt::format("{}: missing field '{}'", where, key));
  try {
    *out = obj.at(key).get<T>();
  } catch (const json::exception&) {
    return Status::InvalidArgument(fmt::format("{}: field '{}' has the wrong type", where, key));
  }
  return Status::Ok();
}

}  // namespace

json EvaluatedPlanToJson(const PlanRequest& r, const EvaluatedPlan& e) {
  json j = LayoutToJson(e.plan, r.training);
  json pred = PredictionToJson(e);
  for (auto it = pred.begin(); it != pred.end(); ++it) j[it.key()] = it.value();
  return j;
}

json SearchToJson(const PlanRequest& r, const SearchResult& res) {
  json plans = json::array();
  for (const EvaluatedPlan& e : res.plans) plans.push_back(EvaluatedPlanToJson(r, e));
  json rejected = json::object();
  for (const auto& [rule, count] : res.rejected_by_rule) rejected[rule] = count;
  return json{{"schema", "p3d-plan/1"},
              {"model", ModelToJson(r.model)},
              {"cluster", ClusterSummaryToJson(r.cluster)},
              {"training", TrainingToJson(r.training)},
              {"search",
               {{"candidates", res.candidates},
                {"fitting", res.fitting},
                {"seconds", res.seconds},
                {"rejected_by_rule", rejected}}},
              {"plans", plans}};
}

json SavedPlanToJson(const PlanRequest& r, const EvaluatedPlan& e) {
  return json{{"schema", "p3d-saved-plan/1"},
              {"model", ModelToJson(r.model)},
              {"cluster", ClusterSummaryToJson(r.cluster)},
              {"training", TrainingToJson(r.training)},
              {"plan", LayoutToJson(e.plan, r.training)},
              {"prediction", PredictionToJson(e)}};
}

StatusOr<SavedPlan> ParseSavedPlan(const json& doc, const std::string& origin) {
  std::string schema;
  P3D_RETURN_IF_ERROR(Get(doc, "schema", origin, &schema));
  if (schema != "p3d-saved-plan/1")
    return Status::InvalidArgument(fmt::format("{}: field 'schema' is '{}', expected 'p3d-saved-plan/1'", origin, schema));
  SavedPlan s;
  if (!doc.contains("model")) return Status::InvalidArgument(fmt::format("{}: missing field 'model'", origin));
  P3D_ASSIGN_OR_RETURN(s.request.model, ModelFromJson(doc.at("model"), origin + ": model", "saved-model"));

  json cluster, training, plan;
  P3D_RETURN_IF_ERROR(Get(doc, "cluster", origin, &cluster));
  P3D_RETURN_IF_ERROR(Get(doc, "training", origin, &training));
  P3D_RETURN_IF_ERROR(Get(doc, "plan", origin, &plan));
  int num_gpus = 0;
  json hardware;
  P3D_RETURN_IF_ERROR(Get(cluster, "num_gpus", origin + ": cluster", &num_gpus));
  P3D_RETURN_IF_ERROR(Get(cluster, "hardware", origin + ": cluster", &hardware));
  P3D_ASSIGN_OR_RETURN(s.request.cluster, ParseClusterJson(hardware.dump(), origin + ": cluster.hardware"));
  s.request.cluster.num_gpus = num_gpus;

  const std::string tw = origin + ": training";
  P3D_RETURN_IF_ERROR(Get(training, "global_batch", tw, &s.request.training.global_batch));
  P3D_RETURN_IF_ERROR(Get(training, "seq", tw, &s.request.training.seq));
  P3D_RETURN_IF_ERROR(Get(training, "dropout", tw, &s.request.training.dropout));
  json precision;
  P3D_RETURN_IF_ERROR(Get(training, "precision", tw, &precision));
  Precision& p = s.request.training.precision;
  const std::string pw = tw + ".precision";
  P3D_RETURN_IF_ERROR(Get(precision, "param_bytes", pw, &p.param_bytes));
  P3D_RETURN_IF_ERROR(Get(precision, "grad_bytes", pw, &p.grad_bytes));
  P3D_RETURN_IF_ERROR(Get(precision, "master_bytes", pw, &p.master_bytes));
  P3D_RETURN_IF_ERROR(Get(precision, "optimizer_bytes", pw, &p.optimizer_bytes));
  P3D_RETURN_IF_ERROR(Get(precision, "activation_bytes", pw, &p.activation_bytes));

  const std::string lw = origin + ": plan";
  std::string recompute;
  P3D_RETURN_IF_ERROR(Get(plan, "dp", lw, &s.plan.dp));
  P3D_RETURN_IF_ERROR(Get(plan, "tp", lw, &s.plan.tp));
  P3D_RETURN_IF_ERROR(Get(plan, "pp", lw, &s.plan.pp));
  P3D_RETURN_IF_ERROR(Get(plan, "vpp", lw, &s.plan.vpp));
  P3D_RETURN_IF_ERROR(Get(plan, "zero", lw, &s.plan.zero));
  P3D_RETURN_IF_ERROR(Get(plan, "micro_batch", lw, &s.plan.micro_batch));
  P3D_RETURN_IF_ERROR(Get(plan, "grad_accum", lw, &s.plan.grad_accum));
  P3D_RETURN_IF_ERROR(Get(plan, "sequence_parallel", lw, &s.plan.sequence_parallel));
  P3D_RETURN_IF_ERROR(Get(plan, "recompute", lw, &recompute));
  if (recompute == "none") s.plan.recompute = Recompute::kNone;
  else if (recompute == "selective") s.plan.recompute = Recompute::kSelective;
  else if (recompute == "full") s.plan.recompute = Recompute::kFull;
  else return Status::InvalidArgument(fmt::format("{}: field 'recompute' must be none|selective|full, got '{}'", lw, recompute));
  // "offload" is absent from plans saved before offload existed: none.
  if (plan.contains("offload")) {
    std::string offload;
    P3D_RETURN_IF_ERROR(Get(plan, "offload", lw, &offload));
    if (!ParseOffload(offload, &s.plan.offload))
      return Status::InvalidArgument(
          fmt::format("{}: field 'offload' must be none|optimizer|params, got '{}'", lw, offload));
  }
  // "attention" is absent from plans saved before the fused core existed:
  // their predictions describe the unfused core.
  s.plan.attention = AttentionImpl::kUnfused;
  if (plan.contains("attention")) {
    std::string attention;
    P3D_RETURN_IF_ERROR(Get(plan, "attention", lw, &attention));
    if (!ParseAttentionImpl(attention, &s.plan.attention))
      return Status::InvalidArgument(
          fmt::format("{}: field 'attention' must be fused|unfused, got '{}'", lw, attention));
  }
  if (doc.contains("prediction")) s.prediction = doc.at("prediction");
  return s;
}

StatusOr<SavedPlan> LoadSavedPlan(const std::string& path) {
  std::ifstream f(path);
  if (!f) return Status::IoError(fmt::format("cannot open plan file '{}'", path));
  json doc = json::parse(f, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded())
    return Status::InvalidArgument(fmt::format("plan file '{}' is not valid JSON (truncated or malformed)", path));
  return ParseSavedPlan(doc, path);
}

}  // namespace p3d
