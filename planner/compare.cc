// Predicted vs measured (compare.h; definitions in docs/calibration.md).
#include "planner/compare.h"

#include <fmt/format.h>

#include <cmath>

#include "common/json_fields.h"

#include "common/units.h"
#include "planner/report.h"
#include "simulator/time_model.h"

namespace p3d {
namespace {

using nlohmann::json;

// The value at a dotted path ("summary.step_time_s.median"), or null.
const json* Find(const json& root, const std::string& dotted) {
  const json* j = &root;
  size_t start = 0;
  while (true) {
    size_t dot = dotted.find('.', start);
    std::string key =
        dotted.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!j->is_object() || !j->contains(key) || j->at(key).is_null()) return nullptr;
    j = &j->at(key);
    if (dot == std::string::npos) return j;
    start = dot + 1;
  }
}

// Every figure of a saved prediction or a run is a size, a time, a rate or a
// count: finite and not negative.
StatusOr<double> Number(const json& root, const std::string& path, const std::string& file) {
  const json* j = Find(root, path);
  if (!j) return Status::InvalidArgument(fmt::format("{}: field '{}' is missing", file, path));
  if (!j->is_number() || !std::isfinite(j->get<double>()) || j->get<double>() < 0)
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be a non-negative number, got {}", file, path, j->dump()));
  return j->get<double>();
}

// A measured figure that must exist and be positive (a step time, a peak).
StatusOr<double> Measured(const json& root, const std::string& path, const std::string& file) {
  P3D_ASSIGN_OR_RETURN(double v, Number(root, path, file));
  if (v <= 0)
    return Status::InvalidArgument(fmt::format("{}: field '{}' must be positive, got {}", file, path, v));
  return v;
}

// A number that may be absent (or null); present but not a number is an error.
StatusOr<std::optional<double>> MaybeNumber(const json& root, const std::string& path,
                                            const std::string& file) {
  if (!Find(root, path)) return std::optional<double>();
  P3D_ASSIGN_OR_RETURN(double v, Number(root, path, file));
  return std::optional<double>(v);
}

StatusOr<std::string> Text(const json& root, const std::string& path, const std::string& file) {
  const json* j = Find(root, path);
  if (!j) return Status::InvalidArgument(fmt::format("{}: field '{}' is missing", file, path));
  if (!j->is_string())
    return Status::InvalidArgument(
        fmt::format("{}: field '{}' must be a string, got {}", file, path, j->dump()));
  return j->get<std::string>();
}

// A measured timeline longer than a day is not a training step.
constexpr double kMaxTimelineSeconds = 86400;

constexpr const char* kMemoryTerms[] = {"weights",     "gradients", "optimizer",
                                        "activations", "buffers",   "runtime"};
constexpr const char* kTimeParts[] = {"compute_s", "tp_comm_s",   "pp_comm_s", "dp_comm_s",
                                      "bubble_s",  "optimizer_s", "other_s"};

// The run must be of the plan's configuration.
Status CheckSameRun(const SavedPlan& p, const json& m, const std::string& plan_file,
                    const std::string& file) {
  auto mismatch = [&](const std::string& field, const std::string& got, const std::string& want) {
    return Status::InvalidArgument(fmt::format(
        "{}: field '{}' is {} but {} plans {}: compare a run of the plan itself (p3d-run --plan)",
        file, field, got, plan_file, want));
  };
  P3D_ASSIGN_OR_RETURN(std::string model, Text(m, "run.model.name", file));
  if (model != p.request.model.name) return mismatch("run.model.name", model, p.request.model.name);
  P3D_ASSIGN_OR_RETURN(std::string recompute, Text(m, "run.recompute", file));
  if (recompute != RecomputeName(p.plan.recompute))
    return mismatch("run.recompute", recompute, RecomputeName(p.plan.recompute));
  const std::pair<const char*, double> ints[] = {
      {"run.micro_batch", static_cast<double>(p.plan.micro_batch)},
      {"run.grad_accum", static_cast<double>(p.plan.grad_accum)},
      {"run.seq", static_cast<double>(p.request.training.seq)}};
  for (const auto& [field, want] : ints) {
    P3D_ASSIGN_OR_RETURN(double got, Number(m, field, file));
    if (got != want) return mismatch(field, fmt::format("{:g}", got), fmt::format("{:g}", want));
  }
  // Layout fields: a single-GPU run may omit them (1, 1, 1, vpp 1, ZeRO 0).
  const std::tuple<const char*, double, double> layout[] = {{"run.dp", p.plan.dp, 1},
                                                            {"run.tp", p.plan.tp, 1},
                                                            {"run.pp", p.plan.pp, 1},
                                                            {"run.vpp", p.plan.vpp, 1},
                                                            {"run.zero", p.plan.zero, 0}};
  for (const auto& [field, want, absent] : layout) {
    P3D_ASSIGN_OR_RETURN(std::optional<double> got, MaybeNumber(m, field, file));
    const double have = got.value_or(absent);
    if (have != want)
      return mismatch(got ? field : fmt::format("{} (absent: a single-GPU run)", field),
                      fmt::format("{:g}", have), fmt::format("{:g}", want));
  }
  return Status::Ok();
}

StatusOr<FitCheck> PredictedFit(const SavedPlan& p, const std::string& plan_file) {
  FitCheck f;
  const json* fits = Find(p.prediction, "fits");
  if (!fits || !fits->is_boolean())
    return Status::InvalidArgument(
        fmt::format("{}: field 'prediction.fits' is missing or not true/false", plan_file));
  f.predicted_fits = fits->get<bool>();
  f.capacity_bytes = p.request.cluster.gpu.memory_bytes;
  return f;
}

StatusOr<json> ReadJson(const std::string& path, const char* what) {
  P3D_ASSIGN_OR_RETURN(json doc, ReadJsonFile(path, fmt::format("{} file", what)));
  if (!doc.is_object())
    return Status::InvalidArgument(fmt::format("{} file '{}' is not a JSON object", what, path));
  return doc;
}

std::string Percent(const std::optional<double>& e) {
  return e ? fmt::format("{:+.1f}%", *e * 100) : "-";
}

// Value in the row's display unit.
std::string Shown(const ComparedFigure& f, const std::optional<double>& v) {
  if (!v) return "-";
  if (f.unit == "bytes") return fmt::format("{:.2f}", ToGiB(*v));
  if (f.unit == "s") return fmt::format("{:.2f}", *v * 1e3);
  if (f.unit == "fraction") return fmt::format("{:.1f}%", *v * 100);
  return fmt::format("{:.0f}", *v);
}

StatusOr<TimelineKind> KindNamed(const std::string& name) {
  static const std::pair<const char*, TimelineKind> kinds[] = {
      {"forward", TimelineKind::kForward},     {"backward", TimelineKind::kBackward},
      {"recompute", TimelineKind::kRecompute}, {"send-recv", TimelineKind::kSendRecv},
      {"tp-comm", TimelineKind::kTpComm},      {"dp-comm", TimelineKind::kDpComm},
      {"optimizer", TimelineKind::kOptimizer}, {"idle", TimelineKind::kIdle}};
  for (const auto& [n, k] : kinds)
    if (name == n) return k;
  return Status::InvalidArgument(fmt::format(
      "unknown kind '{}' (forward, backward, recompute, send-recv, tp-comm, dp-comm, optimizer, "
      "idle)",
      name));
}

ComparedFigure Figure(std::string name, std::string unit) {
  ComparedFigure f;
  f.name = std::move(name);
  f.unit = std::move(unit);
  return f;
}

}  // namespace

const ComparedFigure* Comparison::Find(const std::string& name) const {
  for (const ComparedFigure& f : figures)
    if (f.name == name) return &f;
  return nullptr;
}

StatusOr<Comparison> CompareRun(const json& plan_doc, const std::string& plan_file, const json& m,
                                const std::string& file) {
  P3D_ASSIGN_OR_RETURN(SavedPlan p, ParseSavedPlan(plan_doc, plan_file));
  P3D_RETURN_IF_ERROR(CheckSameRun(p, m, plan_file, file));
  Comparison c;
  c.plan_file = plan_file;
  c.measured_file = file;
  c.plan_summary = fmt::format("{} {}", p.request.model.name, PlanSummary(p.plan));
  if (const json* s = Find(plan_doc, "cluster.source"); s && s->is_string())
    c.predicted_source = *s;
  if (const json* d = Find(m, "device.name"); d && d->is_string()) c.measured_device = *d;
  P3D_ASSIGN_OR_RETURN(c.fit, PredictedFit(p, plan_file));
  c.fit.measured_fits = true;  // it ran
  if (const json* forced = Find(m, "run.forced"); forced && forced->is_boolean())
    c.fit.forced = forced->get<bool>();

  auto predicted = [&](const std::string& field) -> StatusOr<double> {
    return Number(p.prediction, field, plan_file + ": prediction");
  };
  // Memory.
  P3D_ASSIGN_OR_RETURN(double arena, Measured(m, "memory.arena_bytes", file));
  P3D_ASSIGN_OR_RETURN(double used_peak, Measured(m, "memory.device_used_peak_bytes", file));
  P3D_ASSIGN_OR_RETURN(double cuda_total, Measured(m, "memory.device_total_bytes", file));
  const double card = p.request.cluster.gpu.memory_bytes;
  // The driver's reserve is visible only against the card's full size.
  const double reserve =
      card >= cuda_total && card - cuda_total < 0.05 * card ? card - cuda_total : 0;
  const double total = used_peak + reserve;
  for (const char* term : kMemoryTerms) {
    ComparedFigure f = Figure(fmt::format("memory.{}", term), "bytes");
    P3D_ASSIGN_OR_RETURN(f.predicted, predicted(fmt::format("memory.{}", term)));
    if (std::string(term) == "runtime") {
      f.measured = total - arena;
    } else {
      P3D_ASSIGN_OR_RETURN(f.measured,
                           MaybeNumber(m, fmt::format("memory.terms_bytes.{}", term), file));
    }
    c.figures.push_back(f);
  }
  ComparedFigure mem_total = Figure("memory.total", "bytes");
  P3D_ASSIGN_OR_RETURN(mem_total.predicted, predicted("memory.total"));
  mem_total.measured = total;
  c.figures.push_back(mem_total);

  // Time.
  ComparedFigure step = Figure("time.step_s", "s");
  P3D_ASSIGN_OR_RETURN(step.predicted, predicted("time.step_s"));
  P3D_ASSIGN_OR_RETURN(step.measured, Measured(m, "summary.step_time_s.median", file));
  c.figures.push_back(step);
  P3D_ASSIGN_OR_RETURN(std::optional<double> gemm,
                       MaybeNumber(m, "profile.phase_seconds.gemm", file));
  for (const char* part : kTimeParts) {
    ComparedFigure f = Figure(fmt::format("time.{}", part), "s");
    P3D_ASSIGN_OR_RETURN(f.predicted, predicted(fmt::format("time.{}", part)));
    P3D_ASSIGN_OR_RETURN(f.measured, MaybeNumber(m, fmt::format("time.{}", part), file));
    if (!f.measured && gemm) {  // single-GPU p3d-run --profile phases
      const std::string ph = "profile.phase_seconds.";
      const std::string name = part;
      if (name == "compute_s") {
        P3D_ASSIGN_OR_RETURN(double att, Number(m, ph + "attention", file));
        P3D_ASSIGN_OR_RETURN(double other, Number(m, ph + "other", file));
        f.measured = *gemm + att + other;
      } else if (name == "optimizer_s") {
        P3D_ASSIGN_OR_RETURN(f.measured, MaybeNumber(m, ph + "optimizer", file));
      } else if (name == "other_s") {
        P3D_ASSIGN_OR_RETURN(f.measured, MaybeNumber(m, ph + "idle", file));
      } else if (p.plan.gpus() == 1) {
        f.measured = 0;  // one GPU: no communication, no bubble
      }
    }
    c.figures.push_back(f);
  }
  ComparedFigure tokens = Figure("tokens_per_s", "tokens/s");
  P3D_ASSIGN_OR_RETURN(tokens.predicted, predicted("tokens_per_s"));
  P3D_ASSIGN_OR_RETURN(tokens.measured, MaybeNumber(m, "summary.tokens_per_s", file));
  c.figures.push_back(tokens);
  ComparedFigure mfu = Figure("mfu", "fraction");
  P3D_ASSIGN_OR_RETURN(mfu.predicted, predicted("mfu"));
  P3D_ASSIGN_OR_RETURN(mfu.measured, MaybeNumber(m, "summary.mfu", file));
  c.figures.push_back(mfu);
  return c;
}

StatusOr<Comparison> CompareFiles(const std::string& plan_file, const std::string& measured_file) {
  P3D_ASSIGN_OR_RETURN(json plan, ReadJson(plan_file, "plan"));
  P3D_ASSIGN_OR_RETURN(json measured, ReadJson(measured_file, "measured"));
  return CompareRun(plan, plan_file, measured, measured_file);
}

StatusOr<Comparison> CompareFailedRun(const std::string& plan_file) {
  P3D_ASSIGN_OR_RETURN(json doc, ReadJson(plan_file, "plan"));
  P3D_ASSIGN_OR_RETURN(SavedPlan p, ParseSavedPlan(doc, plan_file));
  Comparison c;
  c.plan_file = plan_file;
  c.plan_summary = fmt::format("{} {}", p.request.model.name, PlanSummary(p.plan));
  P3D_ASSIGN_OR_RETURN(c.fit, PredictedFit(p, plan_file));
  c.fit.measured_fits = false;
  c.fit.forced = !c.fit.predicted_fits;
  ComparedFigure total = Figure("memory.total", "bytes");
  P3D_ASSIGN_OR_RETURN(total.predicted,
                       Number(p.prediction, "memory.total", plan_file + ": prediction"));
  c.figures.push_back(total);
  return c;
}

std::string FormatComparison(const Comparison& c) {
  std::string out =
      fmt::format("p3d-compare: {}\n  predicted: {} ({})\n  measured:  {} ({})\n", c.plan_summary,
                  c.plan_file, c.predicted_source,
                  c.measured_file.empty() ? "run failed" : c.measured_file, c.measured_device);
  out += fmt::format("{:<24} {:>12} {:>12} {:>9}\n", "", "predicted", "measured", "error");
  std::string group;
  for (const ComparedFigure& f : c.figures) {
    const std::string g = f.unit == "bytes" ? "memory per GPU (GiB)"
                          : f.unit == "s"   ? "step time (ms)"
                                            : "throughput";
    if (g != group) out += g + "\n", group = g;
    std::string label = f.name.substr(f.name.find('.') + 1);
    if (label.ends_with("_s")) label.resize(label.size() - 2);
    out += fmt::format("  {:<22} {:>12} {:>12} {:>9}\n", label, Shown(f, f.predicted),
                       Shown(f, f.measured), Percent(f.error()));
  }
  const FitCheck& fit = c.fit;
  out += fmt::format("fit: predicted {} in {:.2f} GiB, measured {}{}: the boundary was {}\n",
                     fit.predicted_fits ? "fits" : "does not fit", ToGiB(fit.capacity_bytes),
                     fit.measured_fits ? "ran" : "ran out of memory", fit.forced ? " (forced)" : "",
                     fit.boundary_right() ? "right" : "WRONG");
  return out;
}

json ComparisonToJson(const Comparison& c) {
  json figures = json::array();
  auto opt = [](const std::optional<double>& v) { return v ? json(*v) : json(); };
  for (const ComparedFigure& f : c.figures)
    figures.push_back({{"name", f.name},
                       {"unit", f.unit},
                       {"predicted", opt(f.predicted)},
                       {"measured", opt(f.measured)},
                       {"error", opt(f.error())}});
  return {{"schema", kCompareSchema},
          {"plan_file", c.plan_file},
          {"measured_file", c.measured_file.empty() ? json() : json(c.measured_file)},
          {"plan", c.plan_summary},
          {"predicted_source", c.predicted_source},
          {"measured_device", c.measured_device},
          {"figures", figures},
          {"fit",
           {{"predicted_fits", c.fit.predicted_fits},
            {"measured_fits", c.fit.measured_fits},
            {"forced", c.fit.forced},
            {"capacity_bytes", c.fit.capacity_bytes},
            {"boundary_right", c.fit.boundary_right()}}}};
}

StatusOr<std::string> RenderComparisonSvg(const json& plan_doc, const std::string& plan_file,
                                          const json& m, const std::string& file) {
  P3D_ASSIGN_OR_RETURN(SavedPlan p, ParseSavedPlan(plan_doc, plan_file));
  P3D_ASSIGN_OR_RETURN(TimeEstimate est,
                       TimeModel(p.request.model, p.request.training, p.request.cluster)
                           .Evaluate(p.plan, /*with_timeline=*/true));
  std::vector<TimelineEvent> measured;
  std::string how;
  if (const json* t = Find(m, "timeline"); t && t->is_array()) {
    for (size_t i = 0; i < t->size(); ++i) {
      const std::string at = fmt::format("timeline[{}]", i);
      TimelineEvent e;
      P3D_ASSIGN_OR_RETURN(std::string kind, Text((*t)[i], "kind", file + ": " + at));
      StatusOr<TimelineKind> k = KindNamed(kind);
      if (!k.ok())
        return Status::InvalidArgument(
            fmt::format("{}: field '{}.kind': {}", file, at, k.status().message()));
      e.kind = *k;
      P3D_ASSIGN_OR_RETURN(double rank, Number((*t)[i], "rank", file + ": " + at));
      P3D_ASSIGN_OR_RETURN(e.start_s, Number((*t)[i], "start_s", file + ": " + at));
      P3D_ASSIGN_OR_RETURN(e.end_s, Number((*t)[i], "end_s", file + ": " + at));
      P3D_ASSIGN_OR_RETURN(std::optional<double> mb,
                           MaybeNumber((*t)[i], "microbatch", file + ": " + at));
      P3D_ASSIGN_OR_RETURN(std::optional<double> chunk,
                           MaybeNumber((*t)[i], "chunk", file + ": " + at));
      // Bounded before any cast: a rank of 1e9 drew a billion-row timeline.
      const std::string where = file + ": " + at;
      if (rank != std::floor(rank) || rank >= p.plan.gpus())
        return Status::InvalidArgument(fmt::format("{}: field 'rank' must be an integer rank below the plan's {} "
                                                   "GPUs, got {}", where, p.plan.gpus(), rank));
      if (mb && (*mb != std::floor(*mb) || *mb > 1e9))
        return Status::InvalidArgument(fmt::format("{}: field 'microbatch' must be a micro-batch index, got {}",
                                                   where, *mb));
      if (chunk && (*chunk != std::floor(*chunk) || *chunk >= p.plan.vpp))
        return Status::InvalidArgument(fmt::format("{}: field 'chunk' must be below the plan's VPP {}, got {}",
                                                   where, p.plan.vpp, *chunk));
      if (e.end_s < e.start_s || e.end_s > kMaxTimelineSeconds)
        return Status::InvalidArgument(fmt::format("{}: 'start_s' .. 'end_s' must be an interval within {} s", where,
                                                   kMaxTimelineSeconds));
      e.rank = static_cast<int>(rank);
      e.microbatch = static_cast<int>(mb.value_or(-1));
      e.chunk = static_cast<int>(chunk.value_or(0));
      measured.push_back(e);
    }
    how = "per-rank events of the run";
  } else {
    const std::pair<const char*, TimelineKind> phases[] = {{"gemm", TimelineKind::kForward},
                                                           {"attention", TimelineKind::kForward},
                                                           {"other", TimelineKind::kForward},
                                                           {"idle", TimelineKind::kIdle},
                                                           {"optimizer", TimelineKind::kOptimizer}};
    double clock = 0;
    for (const auto& [phase, kind] : phases) {
      P3D_ASSIGN_OR_RETURN(std::optional<double> s,
                           MaybeNumber(m, fmt::format("profile.phase_seconds.{}", phase), file));
      if (!s) continue;
      measured.push_back({0, kind, -1, 0, clock, clock + *s});
      clock += *s;
    }
    if (measured.empty())
      return Status::InvalidArgument(fmt::format(
          "{}: no 'timeline' and no 'profile.phase_seconds' (run p3d-run with --profile)", file));
    how = "phase totals of one profiled step, forward and backward together";
  }
  TimelineStyle style;
  style.title = fmt::format("{} {}: predicted (simulator) vs measured ({})", p.request.model.name,
                            PlanSummary(p.plan), how);
  return RenderTimelineSvg({{"predicted", est.timeline}, {"measured", measured}}, style);
}

}  // namespace p3d
